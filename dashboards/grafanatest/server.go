// Package grafanatest is a fake of Grafana's HTTP API for tests: an httptest server that holds
// the contract of every call Meridian's provisioning makes and keeps state, so that
// idempotence and conflicts are tested for real. Grafana cannot be installed where the tests run.
package grafanatest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// Server is an httptest server that holds the contract of Grafana's HTTP API for every
// call provisioning makes, and keeps state, so that idempotence is tested for real:
//   - authentication on every call: a bearer token or basic auth, else 401; a read-only token
//     gets 403 on writes;
//   - paths and methods: anything else is 404 (unknown path) or 405 (known path, other method);
//   - JSON bodies decoded strictly into the shapes Grafana's API takes (unknown fields are
//     a 400), with its required fields and value checks (UID length and characters, titles,
//     rule group interval a multiple of 10s, relative time ranges in seconds, condition
//     naming a query, NoData/ExecErr states, for durations);
//   - folders: 404 for a missing one, 409 for a duplicate UID or title;
//   - data sources: 404 for a missing one, 409 for a duplicate name or UID;
//   - dashboards: versions counted as Grafana does (1 on create, +1 per save), a save whose
//     version is not the stored one without overwrite is 412 version-mismatch, the same
//     title in the same folder under another UID is 412 name-exists, a missing folder is 400;
//   - rule groups: 404 for a missing folder or group; a PUT replaces the group (new rules get
//     UIDs from the server; a rule UID the group does not hold is a 400, as client-chosen UIDs
//     fail in the group API of several Grafana versions); titles unique in the folder.
type Server struct {
	srv *httptest.Server
	// Token is accepted for every call, ReaderToken for reads only (403 on writes); User and
	// Password are the basic-auth credentials.
	Token, ReaderToken, User, Password string

	mu         sync.Mutex
	folders    map[string]*fakeFolder
	sources    map[string]map[string]any // by uid: the stored data source JSON
	dashboards map[string]*fakeDashboard
	groups     map[string]map[string]*fakeRuleGroup // folder uid -> title -> group
	nextID     int
	requests   []string        // "METHOD path", every call
	faults     []Fault         // answered, in order, before anything else
	concurrent map[string]bool // dashboards someone else saves just before our next save
	methodSeen bool
}

type fakeFolder struct {
	ID         int
	UID, Title string
	Version    int
}

type fakeDashboard struct {
	id, version int
	folderUID   string
	model       map[string]any
}

type fakeRuleGroup struct {
	Title     string           `json:"title"`
	FolderUID string           `json:"folderUid"`
	Interval  int64            `json:"interval"`
	Rules     []map[string]any `json:"rules"`
}

// Fault is an answer given before any other, for retry tests.
type Fault struct {
	Status     int
	RetryAfter string
}

// New starts a fake Grafana that is closed when the test ends.
func New(t testing.TB) *Server {
	f := &Server{Token: "glsa_test", ReaderToken: "glsa_viewer", User: "admin", Password: "secret",
		folders: map[string]*fakeFolder{}, sources: map[string]map[string]any{}, dashboards: map[string]*fakeDashboard{},
		groups: map[string]map[string]*fakeRuleGroup{}, concurrent: map[string]bool{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the fake's root URL, as --grafana.url.
func (f *Server) URL() string { return f.srv.URL }

// Requests returns every call seen so far, as "METHOD path".
func (f *Server) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// Writes returns the write calls seen so far.
func (f *Server) Writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		if !strings.HasPrefix(r, "GET ") {
			out = append(out, r)
		}
	}
	return out
}

// ResetRequests forgets the calls seen so far.
func (f *Server) ResetRequests() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = nil
}

// Inject queues answers given, in order, to the next calls.
func (f *Server) Inject(faults ...Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, faults...)
}

// EditDashboard changes a stored dashboard as a save from Grafana's UI does: a new version.
func (f *Server) EditDashboard(uid string, edit func(model map[string]any)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dashboards[uid]
	edit(d.model)
	d.version++
	d.model["version"] = d.version
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, msg string, extra ...string) {
	body := map[string]any{"message": msg}
	if len(extra) == 1 {
		body["status"] = extra[0]
	}
	writeJSON(w, status, body)
}

// decodeStrict reads a JSON body into v, refusing unknown fields and trailing data.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		apiError(w, http.StatusUnsupportedMediaType, "content type "+ct)
		return false
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		apiError(w, http.StatusBadRequest, "bad request data: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		apiError(w, http.StatusBadRequest, "bad request data: trailing data")
		return false
	}
	return true
}

var validUID = regexp.MustCompile(`^[a-zA-Z0-9\-_]{1,40}$`)

func (f *Server) authorised(w http.ResponseWriter, r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	write := r.Method != http.MethodGet
	switch {
	case auth == "Bearer "+f.Token:
		return true
	case auth == "Bearer "+f.ReaderToken:
		if write {
			apiError(w, http.StatusForbidden, "You'll need additional permissions to perform this action.")
			return false
		}
		return true
	case strings.HasPrefix(auth, "Basic "):
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic "))
		if err == nil && string(b) == f.User+":"+f.Password {
			return true
		}
	}
	apiError(w, http.StatusUnauthorized, "Unauthorized")
	return false
}

func (f *Server) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	if len(f.faults) > 0 {
		ft := f.faults[0]
		f.faults = f.faults[1:]
		if ft.RetryAfter != "" {
			w.Header().Set("Retry-After", ft.RetryAfter)
		}
		apiError(w, ft.Status, http.StatusText(ft.Status))
		return
	}
	if !f.authorised(w, r) {
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	route := func(method string, pattern ...string) bool {
		if len(parts) != len(pattern) {
			return false
		}
		for i, p := range pattern {
			if p != "*" && p != parts[i] {
				return false
			}
		}
		if r.Method != method {
			f.methodSeen = true
			return false
		}
		return true
	}
	f.methodSeen = false
	switch {
	case route(http.MethodGet, "api", "folders", "*"):
		f.getFolder(w, parts[2])
	case route(http.MethodPost, "api", "folders"):
		f.createFolder(w, r)
	case route(http.MethodPut, "api", "folders", "*"):
		f.updateFolder(w, r, parts[2])
	case route(http.MethodGet, "api", "datasources", "uid", "*"):
		f.getDataSource(w, parts[3])
	case route(http.MethodPost, "api", "datasources"):
		f.saveDataSource(w, r, "")
	case route(http.MethodPut, "api", "datasources", "uid", "*"):
		f.saveDataSource(w, r, parts[3])
	case route(http.MethodGet, "api", "dashboards", "uid", "*"):
		f.getDashboard(w, parts[3])
	case route(http.MethodPost, "api", "dashboards", "db"):
		f.saveDashboard(w, r)
	case route(http.MethodGet, "api", "v1", "provisioning", "folder", "*", "rule-groups", "*"):
		f.getRuleGroup(w, parts[4], parts[6])
	case route(http.MethodPut, "api", "v1", "provisioning", "folder", "*", "rule-groups", "*"):
		f.putRuleGroup(w, r, parts[4], parts[6])
	case f.methodSeen:
		apiError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
	default:
		apiError(w, http.StatusNotFound, "Not found")
	}
}

func (f *Server) folderJSON(fd *fakeFolder) map[string]any {
	return map[string]any{"id": fd.ID, "uid": fd.UID, "title": fd.Title, "url": "/dashboards/f/" + fd.UID + "/", "version": fd.Version}
}

func (f *Server) getFolder(w http.ResponseWriter, uid string) {
	fd, ok := f.folders[uid]
	if !ok {
		apiError(w, http.StatusNotFound, "folder not found", "not-found")
		return
	}
	writeJSON(w, http.StatusOK, f.folderJSON(fd))
}

func (f *Server) titleTaken(title, exceptUID string) bool {
	for _, fd := range f.folders {
		if fd.Title == title && fd.UID != exceptUID {
			return true
		}
	}
	return false
}

func (f *Server) createFolder(w http.ResponseWriter, r *http.Request) {
	var body struct {
		UID       string `json:"uid"`
		Title     string `json:"title"`
		ParentUID string `json:"parentUid"`
		Overwrite bool   `json:"overwrite"`
	}
	if !decodeStrict(w, r, &body) {
		return
	}
	switch {
	case body.Title == "":
		apiError(w, http.StatusBadRequest, "folder title cannot be empty")
	case body.UID != "" && !validUID.MatchString(body.UID):
		apiError(w, http.StatusBadRequest, "uid contains illegal characters or is too long")
	case f.folders[body.UID] != nil:
		apiError(w, http.StatusConflict, "a folder with the same uid already exists")
	case f.titleTaken(body.Title, ""):
		apiError(w, http.StatusConflict, "a folder with the same name already exists")
	default:
		f.nextID++
		fd := &fakeFolder{ID: f.nextID, UID: body.UID, Title: body.Title, Version: 1}
		f.folders[fd.UID] = fd
		writeJSON(w, http.StatusOK, f.folderJSON(fd))
	}
}

func (f *Server) updateFolder(w http.ResponseWriter, r *http.Request, uid string) {
	var body struct {
		UID       string `json:"uid"`
		Title     string `json:"title"`
		Version   int    `json:"version"`
		Overwrite bool   `json:"overwrite"`
	}
	if !decodeStrict(w, r, &body) {
		return
	}
	fd, ok := f.folders[uid]
	switch {
	case !ok:
		apiError(w, http.StatusNotFound, "folder not found", "not-found")
	case body.Title == "":
		apiError(w, http.StatusBadRequest, "folder title cannot be empty")
	case !body.Overwrite && body.Version != fd.Version:
		apiError(w, http.StatusPreconditionFailed, "the folder has been changed by someone else", "version-mismatch")
	case f.titleTaken(body.Title, uid):
		apiError(w, http.StatusConflict, "a folder with the same name already exists")
	default:
		fd.Title = body.Title
		fd.Version++
		writeJSON(w, http.StatusOK, f.folderJSON(fd))
	}
}

// dataSourceBody is Grafana's add/update data source command.
type dataSourceBody struct {
	ID              int64          `json:"id"`
	UID             string         `json:"uid"`
	OrgID           int64          `json:"orgId"`
	Name            string         `json:"name"`
	Type            string         `json:"type"`
	Access          string         `json:"access"`
	URL             string         `json:"url"`
	User            string         `json:"user"`
	Database        string         `json:"database"`
	BasicAuth       bool           `json:"basicAuth"`
	BasicAuthUser   string         `json:"basicAuthUser"`
	WithCredentials bool           `json:"withCredentials"`
	IsDefault       bool           `json:"isDefault"`
	ReadOnly        bool           `json:"readOnly"`
	JSONData        map[string]any `json:"jsonData"`
	SecureJSONData  map[string]any `json:"secureJsonData"`
	Version         int            `json:"version"`
}

func (f *Server) getDataSource(w http.ResponseWriter, uid string) {
	ds, ok := f.sources[uid]
	if !ok {
		apiError(w, http.StatusNotFound, "Data source not found")
		return
	}
	writeJSON(w, http.StatusOK, ds)
}

func (f *Server) saveDataSource(w http.ResponseWriter, r *http.Request, uid string) {
	var body dataSourceBody
	if !decodeStrict(w, r, &body) {
		return
	}
	old, exists := f.sources[uid]
	switch {
	case uid != "" && !exists:
		apiError(w, http.StatusNotFound, "Data source not found")
		return
	case body.Name == "" || body.Type == "":
		apiError(w, http.StatusBadRequest, "name and type are required")
		return
	case body.Access != "proxy" && body.Access != "direct":
		apiError(w, http.StatusBadRequest, fmt.Sprintf("access %q: must be proxy or direct", body.Access))
		return
	case uid == "" && (!validUID.MatchString(body.UID) || f.sources[body.UID] != nil):
		apiError(w, http.StatusConflict, "data source with the same uid already exists")
		return
	case uid != "" && body.UID != "" && body.UID != uid:
		apiError(w, http.StatusBadRequest, "uid of the body differs from the path")
		return
	}
	for u, ds := range f.sources {
		if ds["name"] == body.Name && u != uid {
			apiError(w, http.StatusConflict, "data source with the same name already exists")
			return
		}
	}
	version, id := 1, 0
	if exists {
		version = int(old["version"].(float64)) + 1
		id = int(old["id"].(float64))
	} else {
		f.nextID++
		id = f.nextID
		uid = body.UID
	}
	stored := map[string]any{"id": id, "uid": uid, "orgId": 1, "name": body.Name, "type": body.Type, "access": body.Access, "url": body.URL,
		"isDefault": body.IsDefault, "basicAuth": body.BasicAuth, "jsonData": body.JSONData, "readOnly": false, "version": version}
	f.sources[uid] = normalize(stored).(map[string]any)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "message": "Datasource added", "name": body.Name, "datasource": f.sources[uid]})
}

func (f *Server) getDashboard(w http.ResponseWriter, uid string) {
	d, ok := f.dashboards[uid]
	if !ok {
		apiError(w, http.StatusNotFound, "Dashboard not found", "not-found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"dashboard": d.model, "meta": map[string]any{
		"folderUid": d.folderUID, "version": d.version, "slug": uid, "url": "/d/" + uid + "/" + uid, "provisioned": false,
	}})
}

func (f *Server) saveDashboard(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Dashboard map[string]any `json:"dashboard"`
		FolderID  int64          `json:"folderId"`
		FolderUID string         `json:"folderUid"`
		Overwrite bool           `json:"overwrite"`
		Message   string         `json:"message"`
		// Not part of the command; grafana-api-golang-client sends it and Grafana ignores it.
		Meta json.RawMessage `json:"meta"`
	}
	if !decodeStrict(w, r, &body) {
		return
	}
	m := body.Dashboard
	uid, _ := m["uid"].(string)
	title, _ := m["title"].(string)
	switch {
	case m == nil:
		apiError(w, http.StatusBadRequest, "bad request data: dashboard is required")
		return
	case title == "":
		apiError(w, http.StatusBadRequest, "Dashboard title cannot be empty", "empty-name")
		return
	case !validUID.MatchString(uid):
		apiError(w, http.StatusBadRequest, "uid contains illegal characters or is too long", "bad-uid")
		return
	case body.FolderUID != "" && f.folders[body.FolderUID] == nil:
		apiError(w, http.StatusBadRequest, "Folder not found", "not-found")
		return
	}
	if f.concurrent[uid] && f.dashboards[uid] != nil {
		delete(f.concurrent, uid)
		f.dashboards[uid].version++
		f.dashboards[uid].model["version"] = float64(f.dashboards[uid].version)
	}
	version := 0
	if v, ok := m["version"].(float64); ok {
		version = int(v)
	}
	old, exists := f.dashboards[uid]
	if exists && !body.Overwrite && version != old.version {
		apiError(w, http.StatusPreconditionFailed, "The dashboard has been changed by someone else", "version-mismatch")
		return
	}
	for u, d := range f.dashboards {
		if u != uid && d.folderUID == body.FolderUID && d.model["title"] == title {
			apiError(w, http.StatusPreconditionFailed, "A dashboard with the same name in the folder already exists", "name-exists")
			return
		}
	}
	d := &fakeDashboard{folderUID: body.FolderUID, version: 1}
	if exists {
		d.id, d.version = old.id, old.version+1
	} else {
		f.nextID++
		d.id = f.nextID
	}
	d.model = normalize(m).(map[string]any)
	d.model["id"], d.model["version"] = d.id, d.version
	d.model = normalize(d.model).(map[string]any)
	f.dashboards[uid] = d
	writeJSON(w, http.StatusOK, map[string]any{"id": d.id, "uid": uid, "url": "/d/" + uid + "/" + uid, "status": "success", "version": d.version, "slug": uid})
}

func (f *Server) getRuleGroup(w http.ResponseWriter, folderUID, title string) {
	if f.folders[folderUID] == nil {
		apiError(w, http.StatusNotFound, "folder not found")
		return
	}
	g, ok := f.groups[folderUID][title]
	if !ok {
		apiError(w, http.StatusNotFound, "rule group does not exist")
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// ruleBody is Grafana's provisioned alert rule.
type ruleBody struct {
	ID           int64             `json:"id"`
	UID          string            `json:"uid"`
	OrgID        int64             `json:"orgID"`
	FolderUID    string            `json:"folderUID"`
	RuleGroup    string            `json:"ruleGroup"`
	Title        string            `json:"title"`
	Condition    string            `json:"condition"`
	Data         []queryBody       `json:"data"`
	Updated      time.Time         `json:"updated"`
	NoDataState  string            `json:"noDataState"`
	ExecErrState string            `json:"execErrState"`
	For          string            `json:"for"`
	Annotations  map[string]string `json:"annotations"`
	Labels       map[string]string `json:"labels"`
	Provenance   string            `json:"provenance"`
	IsPaused     bool              `json:"isPaused"`
}

// relativeTimeRange is in seconds before the evaluation.
type relativeTimeRange struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

type queryBody struct {
	RefID             string            `json:"refId"`
	QueryType         string            `json:"queryType"`
	RelativeTimeRange relativeTimeRange `json:"relativeTimeRange"`
	DatasourceUID     string            `json:"datasourceUid"`
	Model             map[string]any    `json:"model"`
}

func (f *Server) putRuleGroup(w http.ResponseWriter, r *http.Request, folderUID, title string) {
	var body struct {
		Title     string     `json:"title"`
		FolderUID string     `json:"folderUid"`
		Interval  int64      `json:"interval"`
		Rules     []ruleBody `json:"rules"`
	}
	if !decodeStrict(w, r, &body) {
		return
	}
	if f.folders[folderUID] == nil {
		apiError(w, http.StatusNotFound, "folder not found")
		return
	}
	bad := func(format string, args ...any) {
		apiError(w, http.StatusBadRequest, "invalid rule group: "+fmt.Sprintf(format, args...))
	}
	if body.Title != title || body.FolderUID != folderUID {
		bad("title %q and folder %q differ from the path", body.Title, body.FolderUID)
		return
	}
	if body.Interval <= 0 || body.Interval%10 != 0 {
		bad("interval %ds must be a positive multiple of the base interval 10s", body.Interval)
		return
	}
	old := f.groups[folderUID][title]
	owned := map[string]bool{}
	if old != nil {
		for _, rl := range old.Rules {
			owned[rl["uid"].(string)] = true
		}
	}
	titles := map[string]bool{}
	for g, grp := range f.groups[folderUID] {
		if g == title {
			continue
		}
		for _, rl := range grp.Rules {
			titles[rl["title"].(string)] = true
		}
	}
	var rules []map[string]any
	for _, rl := range body.Rules {
		refs := map[string]bool{}
		for _, q := range rl.Data {
			if q.RefID == "" || refs[q.RefID] || q.DatasourceUID == "" || q.Model == nil {
				bad("rule %q: query %q needs a unique refId, a datasourceUid and a model", rl.Title, q.RefID)
				return
			}
			if q.RelativeTimeRange.From < q.RelativeTimeRange.To || q.RelativeTimeRange.From > 366*86400 {
				bad("rule %q: query %s: relative time range [From: %d, To: %d] (seconds) is invalid", rl.Title, q.RefID, q.RelativeTimeRange.From, q.RelativeTimeRange.To)
				return
			}
			refs[q.RefID] = true
		}
		_, forErr := model.ParseDuration(rl.For)
		switch {
		case rl.Title == "" || titles[rl.Title]:
			bad("rule title %q is empty or not unique in the folder", rl.Title)
			return
		case rl.FolderUID != folderUID || rl.RuleGroup != title:
			bad("rule %q: folder %q and group %q differ from the path", rl.Title, rl.FolderUID, rl.RuleGroup)
			return
		case !refs[rl.Condition]:
			bad("rule %q: condition %q is not the refId of a query", rl.Title, rl.Condition)
			return
		case rl.NoDataState != "OK" && rl.NoDataState != "NoData" && rl.NoDataState != "Alerting":
			bad("rule %q: noDataState %q", rl.Title, rl.NoDataState)
			return
		case rl.ExecErrState != "OK" && rl.ExecErrState != "Error" && rl.ExecErrState != "Alerting":
			bad("rule %q: execErrState %q", rl.Title, rl.ExecErrState)
			return
		case forErr != nil:
			bad("rule %q: for %q: %v", rl.Title, rl.For, forErr)
			return
		case rl.UID != "" && !owned[rl.UID]:
			bad("rule %q: uid %q is not a rule of this group", rl.Title, rl.UID)
			return
		}
		titles[rl.Title] = true
		if rl.UID == "" {
			f.nextID++
			rl.UID = "rule" + strconv.Itoa(f.nextID)
		}
		rl.OrgID, rl.Provenance, rl.Updated = 1, "api", time.Now().UTC()
		rules = append(rules, normalize(rl).(map[string]any))
	}
	if f.groups[folderUID] == nil {
		f.groups[folderUID] = map[string]*fakeRuleGroup{}
	}
	g := &fakeRuleGroup{Title: title, FolderUID: folderUID, Interval: body.Interval, Rules: rules}
	f.groups[folderUID][title] = g
	writeJSON(w, http.StatusOK, g)
}

// ConcurrentSave makes someone else save the dashboard just before our next save of it: that
// save's version is then stale.
func (f *Server) ConcurrentSave(uid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.concurrent[uid] = true
}

// Dashboard returns a copy of a stored dashboard's model, and its folder.
func (f *Server) Dashboard(uid string) (model map[string]any, folderUID string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.dashboards[uid]
	if !ok {
		return nil, "", false
	}
	return normalize(d.model).(map[string]any), d.folderUID, true
}

// FolderTitle returns a folder's title.
func (f *Server) FolderTitle(uid string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fd, ok := f.folders[uid]
	if !ok {
		return "", false
	}
	return fd.Title, true
}

// RenameFolder changes a folder's title as someone in Grafana would.
func (f *Server) RenameFolder(uid, title string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.folders[uid].Title = title
	f.folders[uid].Version++
}

// DataSource returns a copy of a stored data source as Grafana answers it.
func (f *Server) DataSource(uid string) (map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ds, ok := f.sources[uid]
	if !ok {
		return nil, false
	}
	return normalize(ds).(map[string]any), true
}

// EditDataSource changes a stored data source as someone in Grafana would.
func (f *Server) EditDataSource(uid string, edit func(ds map[string]any)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	edit(f.sources[uid])
}

// RuleGroup returns copies of a rule group's stored rules.
func (f *Server) RuleGroup(folderUID, title string) ([]map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.groups[folderUID][title]
	if !ok {
		return nil, false
	}
	out := make([]map[string]any, len(g.Rules))
	for i, r := range g.Rules {
		out[i] = normalize(r).(map[string]any)
	}
	return out, true
}

// Rules counts the stored rules of a folder.
func (f *Server) Rules(folderUID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, g := range f.groups[folderUID] {
		n += len(g.Rules)
	}
	return n
}

// normalize gives v as JSON decodes it (numbers as float64): how Grafana stores and answers.
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return v
	}
	return out
}
