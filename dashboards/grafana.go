package dashboards

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Grafana is the part of Grafana's HTTP API that provisioning uses. It is implemented over
// grafana-api-golang-client in grafanaclient.go; a move to another client replaces that file.
// Getters return ErrNotFound for an object that does not exist; every call returns an
// *APIError for any other answer that is not a success.
type Grafana interface {
	Folder(ctx context.Context, uid string) (Folder, error)
	CreateFolder(ctx context.Context, f Folder) error
	UpdateFolder(ctx context.Context, f Folder) error

	DataSource(ctx context.Context, uid string) (DataSource, error)
	CreateDataSource(ctx context.Context, ds DataSource) error
	UpdateDataSource(ctx context.Context, ds DataSource) error

	Dashboard(ctx context.Context, uid string) (StoredDashboard, error)
	// SaveDashboard creates or updates a dashboard by UID. Without Overwrite, Grafana refuses
	// (412) a model whose version is not the stored one.
	SaveDashboard(ctx context.Context, d DashboardSave) error

	RuleGroup(ctx context.Context, folderUID, title string) (RuleGroup, error)
	// SaveRuleGroup replaces the group's rules: rules with a UID are updated, rules without
	// one are created, the group's other rules are deleted.
	SaveRuleGroup(ctx context.Context, g RuleGroup) error
}

// ErrNotFound is what a getter of Grafana returns for an object that does not exist.
var ErrNotFound = errors.New("not found")

// Folder is a Grafana folder.
type Folder struct {
	UID, Title string
}

// DataSource is a Grafana data source, with the fields provisioning sets.
type DataSource struct {
	UID, Name, Type, URL, Access string
	IsDefault                    bool
	JSONData                     map[string]any
}

// StoredDashboard is a dashboard as Grafana holds it.
type StoredDashboard struct {
	Model     map[string]any
	FolderUID string
	Version   int64
}

// DashboardSave is the body of a dashboard save.
type DashboardSave struct {
	Model     map[string]any
	FolderUID string
	Overwrite bool
	Message   string
}

// RuleGroup is a group of Grafana-managed alert rules in a folder, evaluated every Interval.
type RuleGroup struct {
	FolderUID, Title string
	Interval         time.Duration
	Rules            []AlertRule
}

// AlertRule is a Grafana-managed alert rule.
type AlertRule struct {
	UID, Title string
	// Condition is the RefID of the query or expression that decides whether it fires.
	Condition    string
	Data         []AlertQuery
	For          time.Duration
	NoDataState  string // OK, NoData, Alerting
	ExecErrState string // OK, Error, Alerting
	Labels       map[string]string
	Annotations  map[string]string
}

// AlertQuery is one step of an alert rule: a data source query or a server-side expression
// (DatasourceUID "__expr__").
type AlertQuery struct {
	RefID         string
	DatasourceUID string
	// From and To are the query's range relative to the evaluation time.
	From, To time.Duration
	Model    map[string]any
}

// APIError is an answer of Grafana that is not a success, after retries.
type APIError struct {
	Method, Path string
	StatusCode   int
	Message      string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("%s %s: %d: %s", e.Method, e.Path, e.StatusCode, msg)
}

// Hint is one line that tells the operator what to fix for the answers that are
// configuration mistakes (401, 403, 404 on a write), and "" otherwise.
func (e *APIError) Hint() string {
	switch {
	case e.StatusCode == http.StatusUnauthorized:
		return "Grafana refused the credentials (401): check --grafana.token-file or --grafana.basic-auth-file (wrong or expired token, wrong password)"
	case e.StatusCode == http.StatusForbidden:
		return fmt.Sprintf("Grafana refused %s %s (403): the token's user or service account lacks a permission; it needs the Admin role, or folders, datasources, dashboards and alert provisioning write permissions", e.Method, e.Path)
	case e.StatusCode == http.StatusNotFound && e.Method != http.MethodGet:
		return fmt.Sprintf("Grafana answered 404 to %s %s: check --grafana.url (Grafana's root URL, with its sub-path if it is served under one) and the organisation of the token", e.Method, e.Path)
	}
	return ""
}
