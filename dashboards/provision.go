package dashboards

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"strings"
)

// Actions reported per object.
const (
	ActionCreated   = "created"
	ActionUpdated   = "updated"
	ActionUnchanged = "unchanged"
	// ActionSkipped: a dashboard edited in Grafana since it was provisioned, left as it is
	// (without Force).
	ActionSkipped = "skipped"
)

// Change is what provisioning did, or would do, to one object.
type Change struct {
	Kind   string // folder, datasource, dashboard, rule group
	UID    string
	Title  string
	Action string
	Detail string
}

// Report lists the changes of a run, in order.
type Report struct {
	DryRun  bool
	Changes []Change
}

// Changed counts the objects created or updated (or that would be, in a dry run).
func (r Report) Changed() int {
	n := 0
	for _, c := range r.Changes {
		if c.Action == ActionCreated || c.Action == ActionUpdated {
			n++
		}
	}
	return n
}

// Skipped lists the dashboards left alone because they were edited in Grafana.
func (r Report) Skipped() []Change {
	var out []Change
	for _, c := range r.Changes {
		if c.Action == ActionSkipped {
			out = append(out, c)
		}
	}
	return out
}

// Lines is the report for people: one line per object, then the count.
func (r Report) Lines() []string {
	var out []string
	for _, c := range r.Changes {
		action := c.Action
		if r.DryRun && (action == ActionCreated || action == ActionUpdated) {
			action = "would be " + action
		}
		line := fmt.Sprintf("%s %s (%s): %s", c.Kind, c.UID, c.Title, action)
		if c.Detail != "" {
			line += ": " + c.Detail
		}
		out = append(out, line)
	}
	if r.DryRun {
		return append(out, fmt.Sprintf("%d would change (dry run, nothing written)", r.Changed()))
	}
	return append(out, fmt.Sprintf("%d changed", r.Changed()))
}

// ProvisionOptions are the objects to provision and how.
type ProvisionOptions struct {
	Folder     Folder
	DataSource DataSource
	Dashboards []Dashboard
	// RuleGroups are Grafana-managed alert rule groups, put in Folder; none: no alert rules.
	RuleGroups []RuleGroup
	// DryRun reads and reports, and writes nothing.
	DryRun bool
	// Force overwrites dashboards edited in Grafana since they were provisioned.
	Force bool
}

// ErrEditedInGrafana is returned (with the report) when dashboards were left alone because
// they were edited in Grafana; Force overwrites them.
var ErrEditedInGrafana = errors.New("edited in Grafana since provisioned, not overwritten (--force overwrites)")

// Provision creates or updates the folder, the data source, the dashboards and the rule
// groups, in that order, writing only what differs from what Grafana holds: a second run
// writes nothing.
func Provision(ctx context.Context, g Grafana, o ProvisionOptions) (Report, error) {
	p := &provisioner{g: g, o: o, report: Report{DryRun: o.DryRun}}
	for _, step := range []func(context.Context) error{p.folder, p.datasource, p.dashboards, p.ruleGroups} {
		if err := step(ctx); err != nil {
			return p.report, err
		}
	}
	if s := p.report.Skipped(); len(s) > 0 {
		uids := make([]string, len(s))
		for i, c := range s {
			uids[i] = c.UID
		}
		return p.report, fmt.Errorf("dashboards %s: %w", strings.Join(uids, ", "), ErrEditedInGrafana)
	}
	return p.report, nil
}

type provisioner struct {
	g      Grafana
	o      ProvisionOptions
	report Report
}

func (p *provisioner) note(kind, uid, title, action, detail string) {
	p.report.Changes = append(p.report.Changes, Change{Kind: kind, UID: uid, Title: title, Action: action, Detail: detail})
}

// write runs a write unless this is a dry run.
func (p *provisioner) write(f func() error) error {
	if p.o.DryRun {
		return nil
	}
	return f()
}

func (p *provisioner) folder(ctx context.Context) error {
	want := p.o.Folder
	have, err := p.g.Folder(ctx, want.UID)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := p.write(func() error { return p.g.CreateFolder(ctx, want) }); err != nil {
			return fmt.Errorf("create folder %s: %w", want.UID, err)
		}
		p.note("folder", want.UID, want.Title, ActionCreated, "")
	case err != nil:
		return fmt.Errorf("folder %s: %w", want.UID, err)
	case have.Title != want.Title:
		if err := p.write(func() error { return p.g.UpdateFolder(ctx, want) }); err != nil {
			return fmt.Errorf("update folder %s: %w", want.UID, err)
		}
		p.note("folder", want.UID, want.Title, ActionUpdated, fmt.Sprintf("title was %q", have.Title))
	default:
		p.note("folder", want.UID, want.Title, ActionUnchanged, "")
	}
	return nil
}

func (p *provisioner) datasource(ctx context.Context) error {
	want := p.o.DataSource
	have, err := p.g.DataSource(ctx, want.UID)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := p.write(func() error { return p.g.CreateDataSource(ctx, want) }); err != nil {
			return fmt.Errorf("create data source %s: %w", want.UID, err)
		}
		p.note("datasource", want.UID, want.Name, ActionCreated, want.URL)
		return nil
	case err != nil:
		return fmt.Errorf("data source %s: %w", want.UID, err)
	}
	diff := dataSourceDiff(have, want)
	if diff == "" {
		p.note("datasource", want.UID, want.Name, ActionUnchanged, "")
		return nil
	}
	// Settings someone added beside ours are kept.
	merged := want
	merged.JSONData = maps.Clone(have.JSONData)
	if merged.JSONData == nil {
		merged.JSONData = map[string]any{}
	}
	maps.Copy(merged.JSONData, want.JSONData)
	if err := p.write(func() error { return p.g.UpdateDataSource(ctx, merged) }); err != nil {
		return fmt.Errorf("update data source %s: %w", want.UID, err)
	}
	p.note("datasource", want.UID, want.Name, ActionUpdated, diff)
	return nil
}

// dataSourceDiff names the fields we set that differ; "" when none does.
func dataSourceDiff(have, want DataSource) string {
	var d []string
	for _, f := range []struct {
		name       string
		have, want any
	}{{"name", have.Name, want.Name}, {"type", have.Type, want.Type}, {"url", have.URL, want.URL}, {"access", have.Access, want.Access}, {"isDefault", have.IsDefault, want.IsDefault}} {
		if f.have != f.want {
			d = append(d, fmt.Sprintf("%s %v -> %v", f.name, f.have, f.want))
		}
	}
	for k, v := range want.JSONData {
		if !jsonEqual(have.JSONData[k], v) {
			d = append(d, fmt.Sprintf("jsonData.%s %v -> %v", k, have.JSONData[k], v))
		}
	}
	return strings.Join(d, ", ")
}

// jsonEqual compares two values as JSON sees them (numbers as float64).
func jsonEqual(a, b any) bool {
	return reflect.DeepEqual(normalize(a), normalize(b))
}

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

// provisionMarker is the key of the dashboard model where provisioning records what it
// wrote: the hash of the generated model and the version Grafana gives it on that save. A
// dashboard whose stored version is another was saved since by someone else.
const provisionMarker = "meridianProvisioning"

type marker struct {
	SHA256  string `json:"sha256"`
	Version int64  `json:"version"`
}

func modelHash(model map[string]any) (string, error) {
	m := maps.Clone(model)
	delete(m, "id")
	delete(m, "version")
	delete(m, provisionMarker)
	b, err := json.Marshal(m) // maps marshal with sorted keys
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func readMarker(model map[string]any) (marker, bool) {
	var m marker
	raw, ok := model[provisionMarker]
	if !ok {
		return m, false
	}
	b, err := json.Marshal(raw)
	if err != nil || json.Unmarshal(b, &m) != nil || m.SHA256 == "" {
		return m, false
	}
	return m, true
}

func (p *provisioner) dashboards(ctx context.Context) error {
	for _, d := range p.o.Dashboards {
		if err := p.dashboard(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func (p *provisioner) dashboard(ctx context.Context, d Dashboard) error {
	b, err := d.JSON()
	if err != nil {
		return err
	}
	var want map[string]any
	if err := json.Unmarshal(b, &want); err != nil {
		return fmt.Errorf("dashboard %s: %w", d.UID, err)
	}
	hash, err := modelHash(want)
	if err != nil {
		return fmt.Errorf("dashboard %s: %w", d.UID, err)
	}
	have, err := p.g.Dashboard(ctx, d.UID)
	var (
		action, detail string
		overwrite      bool
		version        int64 // the stored version the save is based on; 0 creates
	)
	switch {
	case errors.Is(err, ErrNotFound):
		action = ActionCreated
	case err != nil:
		return fmt.Errorf("dashboard %s: %w", d.UID, err)
	default:
		version = have.Version
		mk, ok := readMarker(have.Model)
		untouched := ok && mk.Version == have.Version
		switch {
		case untouched && mk.SHA256 == hash && have.FolderUID == p.o.Folder.UID:
			p.note("dashboard", d.UID, d.Title, ActionUnchanged, "")
			return nil
		case untouched:
			action = ActionUpdated
			if have.FolderUID != p.o.Folder.UID {
				detail = fmt.Sprintf("moved from folder %q", have.FolderUID)
			}
		default:
			if h, err := modelHash(have.Model); err == nil && h == hash && have.FolderUID == p.o.Folder.UID {
				p.note("dashboard", d.UID, d.Title, ActionUnchanged, "edited in Grafana, same as generated")
				return nil
			}
			if !p.o.Force {
				p.note("dashboard", d.UID, d.Title, ActionSkipped, fmt.Sprintf("edited in Grafana since it was provisioned (version %d); --force overwrites", have.Version))
				return nil
			}
			action, detail, overwrite = ActionUpdated, fmt.Sprintf("overwrote version %d edited in Grafana (--force)", have.Version), true
		}
	}
	want[provisionMarker] = marker{SHA256: hash, Version: version + 1}
	if version > 0 {
		want["version"] = version
	}
	save := DashboardSave{Model: want, FolderUID: p.o.Folder.UID, Overwrite: overwrite, Message: "meridian dashboards provision"}
	if err := p.write(func() error { return p.g.SaveDashboard(ctx, save) }); err != nil {
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.StatusCode == 412 {
			return fmt.Errorf("dashboard %s changed in Grafana during provisioning (%w): run again", d.UID, err)
		}
		return fmt.Errorf("save dashboard %s: %w", d.UID, err)
	}
	p.note("dashboard", d.UID, d.Title, action, detail)
	return nil
}

func (p *provisioner) ruleGroups(ctx context.Context) error {
	for _, want := range p.o.RuleGroups {
		want.FolderUID = p.o.Folder.UID
		have, err := p.g.RuleGroup(ctx, want.FolderUID, want.Title)
		action := ActionCreated
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return fmt.Errorf("rule group %s: %w", want.Title, err)
		default:
			// Rules are matched by title; Grafana keeps their UIDs.
			uids := map[string]string{}
			for _, r := range have.Rules {
				uids[r.Title] = r.UID
			}
			for i := range want.Rules {
				want.Rules[i].UID = uids[want.Rules[i].Title]
			}
			if ruleGroupsEqual(have, want) {
				p.note("rule group", want.Title, fmt.Sprintf("%d rules", len(want.Rules)), ActionUnchanged, "")
				continue
			}
			action = ActionUpdated
		}
		if err := p.write(func() error { return p.g.SaveRuleGroup(ctx, want) }); err != nil {
			return fmt.Errorf("save rule group %s: %w", want.Title, err)
		}
		p.note("rule group", want.Title, fmt.Sprintf("%d rules", len(want.Rules)), action, "")
	}
	return nil
}

// ruleGroupsEqual compares what we set of a group; fields Grafana adds to stored rules and
// query models are ignored.
func ruleGroupsEqual(have, want RuleGroup) bool {
	if have.Interval != want.Interval || len(have.Rules) != len(want.Rules) {
		return false
	}
	byTitle := map[string]AlertRule{}
	for _, r := range have.Rules {
		byTitle[r.Title] = r
	}
	for _, w := range want.Rules {
		h, ok := byTitle[w.Title]
		if !ok || h.Condition != w.Condition || h.For != w.For || h.NoDataState != w.NoDataState || h.ExecErrState != w.ExecErrState ||
			!jsonEqual(emptyAsNil(h.Labels), emptyAsNil(w.Labels)) || !jsonEqual(emptyAsNil(h.Annotations), emptyAsNil(w.Annotations)) || len(h.Data) != len(w.Data) {
			return false
		}
		for i, wq := range w.Data {
			hq := h.Data[i]
			if hq.RefID != wq.RefID || hq.DatasourceUID != wq.DatasourceUID || hq.From != wq.From || hq.To != wq.To {
				return false
			}
			for k, v := range wq.Model {
				if !jsonEqual(hq.Model[k], v) {
					return false
				}
			}
		}
	}
	return true
}

func emptyAsNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

// FolderUID is the stable UID of a folder title: "Meridian" -> "meridian".
func FolderUID(title string) string {
	uid := strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(title), "-"), "-")
	if uid == "" {
		uid = "folder"
	}
	if len(uid) > 40 {
		sum := sha256.Sum256([]byte(title))
		uid = uid[:31] + "-" + hex.EncodeToString(sum[:4])
	}
	return uid
}
