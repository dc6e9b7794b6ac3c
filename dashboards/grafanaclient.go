package dashboards

// This file is the only one that knows grafana-api-golang-client (archived upstream): moving
// to its successor replaces this file and keeps the Grafana interface.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	gapi "github.com/grafana/grafana-api-golang-client"
	"github.com/prometheus/common/model"
)

// ClientConfig says how to reach Grafana.
type ClientConfig struct {
	// URL is Grafana's root URL, with its sub-path if it is served under one.
	URL string
	// Token is a service account token (or API key); BasicAuth a user and password. One of
	// them is required.
	Token     string
	BasicAuth *url.Userinfo
	// OrgID selects the organisation with basic auth; 0 is the user's current one.
	OrgID int64
	// Retries of a call answered 429 or 5xx, or that failed on the network; default 5. The
	// wait starts at MinBackoff (default 500ms) and doubles up to MaxBackoff (default 10s);
	// a Retry-After answer is honoured up to MaxBackoff.
	Retries    int
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Transport carries the requests; nil is http.DefaultTransport.
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// NewClient returns the Grafana API over grafana-api-golang-client.
func NewClient(cfg ClientConfig) (Grafana, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("grafana url %q: must be an absolute http(s) URL", cfg.URL)
	}
	if (cfg.Token == "") == (cfg.BasicAuth == nil) {
		return nil, errors.New("grafana: give either a token or basic-auth credentials")
	}
	if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &client{cfg: cfg}, nil
}

type client struct{ cfg ClientConfig }

// api returns a library client whose requests carry ctx and go through the retrying transport.
func (c *client) api(ctx context.Context) (*gapi.Client, error) {
	return gapi.New(c.cfg.URL, gapi.Config{
		APIKey:    c.cfg.Token,
		BasicAuth: c.cfg.BasicAuth,
		OrgID:     c.cfg.OrgID,
		Client:    &http.Client{Transport: &retryTransport{ctx: ctx, cfg: c.cfg}},
		// Retries are the transport's, with backoff and the context; the library's would
		// sleep a fixed 5s without either.
		NumRetries: 0,
	})
}

// call runs f with a library client and turns its error into ours.
func call[T any](ctx context.Context, c *client, f func(*gapi.Client) (T, error)) (T, error) {
	var zero T
	api, err := c.api(ctx)
	if err != nil {
		return zero, fmt.Errorf("grafana client: %w", err)
	}
	v, err := f(api)
	if err != nil {
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			if apiErr.StatusCode == http.StatusNotFound && apiErr.Method == http.MethodGet {
				return zero, fmt.Errorf("%w: %w", ErrNotFound, apiErr)
			}
			return zero, apiErr
		}
		return zero, fmt.Errorf("grafana: %w", err)
	}
	return v, nil
}

func (c *client) Folder(ctx context.Context, uid string) (Folder, error) {
	f, err := call(ctx, c, func(a *gapi.Client) (*gapi.Folder, error) { return a.FolderByUID(uid) })
	if err != nil {
		return Folder{}, err
	}
	return Folder{UID: f.UID, Title: f.Title}, nil
}

func (c *client) CreateFolder(ctx context.Context, f Folder) error {
	_, err := call(ctx, c, func(a *gapi.Client) (gapi.Folder, error) { return a.NewFolder(f.Title, f.UID) })
	return err
}

func (c *client) UpdateFolder(ctx context.Context, f Folder) error {
	_, err := call(ctx, c, func(a *gapi.Client) (struct{}, error) { return struct{}{}, a.UpdateFolder(f.UID, f.Title) })
	return err
}

func (c *client) DataSource(ctx context.Context, uid string) (DataSource, error) {
	ds, err := call(ctx, c, func(a *gapi.Client) (*gapi.DataSource, error) { return a.DataSourceByUID(uid) })
	if err != nil {
		return DataSource{}, err
	}
	return DataSource{UID: ds.UID, Name: ds.Name, Type: ds.Type, URL: ds.URL, Access: ds.Access, IsDefault: ds.IsDefault, JSONData: ds.JSONData}, nil
}

func toAPIDataSource(ds DataSource) *gapi.DataSource {
	return &gapi.DataSource{UID: ds.UID, Name: ds.Name, Type: ds.Type, URL: ds.URL, Access: ds.Access, IsDefault: ds.IsDefault, JSONData: ds.JSONData}
}

func (c *client) CreateDataSource(ctx context.Context, ds DataSource) error {
	_, err := call(ctx, c, func(a *gapi.Client) (int64, error) { return a.NewDataSource(toAPIDataSource(ds)) })
	return err
}

func (c *client) UpdateDataSource(ctx context.Context, ds DataSource) error {
	_, err := call(ctx, c, func(a *gapi.Client) (struct{}, error) {
		return struct{}{}, a.UpdateDataSourceByUID(toAPIDataSource(ds))
	})
	return err
}

func (c *client) Dashboard(ctx context.Context, uid string) (StoredDashboard, error) {
	d, err := call(ctx, c, func(a *gapi.Client) (*gapi.Dashboard, error) { return a.DashboardByUID(uid) })
	if err != nil {
		return StoredDashboard{}, err
	}
	version, _ := d.Model["version"].(float64)
	return StoredDashboard{Model: d.Model, FolderUID: d.Meta.FolderUID, Version: int64(version)}, nil
}

func (c *client) SaveDashboard(ctx context.Context, d DashboardSave) error {
	_, err := call(ctx, c, func(a *gapi.Client) (*gapi.DashboardSaveResponse, error) {
		return a.NewDashboard(gapi.Dashboard{Model: d.Model, FolderUID: d.FolderUID, Overwrite: d.Overwrite, Message: d.Message})
	})
	return err
}

func (c *client) RuleGroup(ctx context.Context, folderUID, title string) (RuleGroup, error) {
	g, err := call(ctx, c, func(a *gapi.Client) (gapi.RuleGroup, error) { return a.AlertRuleGroup(folderUID, title) })
	if err != nil {
		return RuleGroup{}, err
	}
	out := RuleGroup{FolderUID: g.FolderUID, Title: g.Title, Interval: time.Duration(g.Interval) * time.Second}
	for _, r := range g.Rules {
		forDur, err := parseRuleDuration(r.For)
		if err != nil {
			return RuleGroup{}, fmt.Errorf("grafana rule %s: for %q: %w", r.UID, r.For, err)
		}
		rule := AlertRule{UID: r.UID, Title: r.Title, Condition: r.Condition, For: forDur,
			NoDataState: string(r.NoDataState), ExecErrState: string(r.ExecErrState), Labels: r.Labels, Annotations: r.Annotations}
		for _, q := range r.Data {
			model, _ := q.Model.(map[string]any)
			// Grafana counts the relative time range in seconds.
			rule.Data = append(rule.Data, AlertQuery{RefID: q.RefID, DatasourceUID: q.DatasourceUID,
				From: time.Duration(q.RelativeTimeRange.From) * time.Second, To: time.Duration(q.RelativeTimeRange.To) * time.Second, Model: model})
		}
		out.Rules = append(out.Rules, rule)
	}
	return out, nil
}

func (c *client) SaveRuleGroup(ctx context.Context, g RuleGroup) error {
	group := gapi.RuleGroup{FolderUID: g.FolderUID, Title: g.Title, Interval: int64(g.Interval / time.Second)}
	for _, r := range g.Rules {
		rule := gapi.AlertRule{UID: r.UID, Title: r.Title, Condition: r.Condition, FolderUID: g.FolderUID, RuleGroup: g.Title,
			ForDuration: r.For, NoDataState: gapi.NoDataState(r.NoDataState), ExecErrState: gapi.ExecErrState(r.ExecErrState),
			Labels: r.Labels, Annotations: r.Annotations}
		for _, q := range r.Data {
			rule.Data = append(rule.Data, &gapi.AlertQuery{RefID: q.RefID, DatasourceUID: q.DatasourceUID, Model: q.Model,
				RelativeTimeRange: gapi.RelativeTimeRange{From: time.Duration(q.From / time.Second), To: time.Duration(q.To / time.Second)}})
		}
		group.Rules = append(group.Rules, rule)
	}
	_, err := call(ctx, c, func(a *gapi.Client) (struct{}, error) { return struct{}{}, a.SetAlertRuleGroup(group) })
	return err
}

// parseRuleDuration reads Grafana's "for" (Prometheus durations such as 5m or 1h30m, "0s").
func parseRuleDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := model.ParseDuration(s)
	return time.Duration(d), err
}

// retryTransport sends a request with the call's context, retries it with exponential
// backoff on 429, 5xx and network errors, and turns a final answer that is not a success
// into an *APIError, so that the library never has to be parsed for status codes.
type retryTransport struct {
	ctx context.Context
	cfg ClientConfig
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.WithContext(t.ctx)
	path := req.URL.Path
	wait := t.cfg.MinBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req.Body = body
		}
		resp, err := t.cfg.Transport.RoundTrip(req)
		retryable := err != nil
		var apiErr *APIError
		if err == nil {
			if resp.StatusCode < 400 {
				return resp, nil
			}
			apiErr = readAPIError(req.Method, path, resp)
			retryable = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
			if ra, ok := retryAfter(resp); ok {
				wait = min(max(ra, wait), t.cfg.MaxBackoff)
			}
		}
		if !retryable || attempt >= t.cfg.Retries {
			if apiErr != nil {
				return nil, apiErr
			}
			return nil, err
		}
		t.cfg.Logger.Warn("grafana call failed, retrying", "method", req.Method, "path", path, "attempt", attempt+1, "wait", wait, "err", errors.Join(err, errOrNil(apiErr)))
		select {
		case <-t.ctx.Done():
			return nil, t.ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, t.cfg.MaxBackoff)
	}
}

func errOrNil(e *APIError) error {
	if e == nil {
		return nil
	}
	return e
}

func readAPIError(method, path string, resp *http.Response) *APIError {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	e := &APIError{Method: method, Path: path, StatusCode: resp.StatusCode}
	var msg struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &msg) == nil && msg.Message != "" {
		e.Message = msg.Message
	} else {
		e.Message = string(bytes.TrimSpace(body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "..."
		}
	}
	return e
}

func retryAfter(resp *http.Response) (time.Duration, bool) {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}
