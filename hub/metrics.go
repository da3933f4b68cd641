package hub

import (
	"reflect"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// metrics are the hub's Prometheus series (docs/operations.md lists them),
// in the registry of Config.Metrics: no global state.
type metrics struct {
	live           prometheus.Gauge
	connects       prometheus.Counter
	rejected       *prometheus.CounterVec
	disconnects    *prometheus.CounterVec
	notifications  prometheus.Counter
	adminCalls     *prometheus.CounterVec
	adminRefused   *prometheus.CounterVec
	refreshes      *prometheus.CounterVec
	authFailures   prometheus.Counter
	appendFailures prometheus.Counter
	framesPaced    prometheus.Counter
	lostRecorded   prometheus.Counter
	appendSeconds  prometheus.Histogram
	enforceSeconds prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry, s *Server) *metrics {
	m := &metrics{
		live: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sessionledger_sessions_live",
			Help: "Sessions connected to this node."}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{Name: "sessionledger_connects_total",
			Help: "Sessions accepted (connects and resumes)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sessionledger_connects_rejected_total",
			Help: "Connects refused, by code."}, []string{"code"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sessionledger_disconnects_total",
			Help: "Sessions ended, by cause."}, []string{"cause"}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{Name: "sessionledger_notifications_delivered_total",
			Help: "Notification frames sent to sessions."}),
		adminCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sessionledger_admin_calls_total",
			Help: "Admin calls, by method and gRPC code."}, []string{"method", "code"}),
		adminRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sessionledger_admin_calls_refused_total",
			Help: "Admin calls refused because they are outside the token's role, by method and role."}, []string{"method", "role"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sessionledger_token_refreshes_total",
			Help: "Client token refreshes (Refresh frames), by result: ok or the refusal's code."}, []string{"result"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "sessionledger_auth_failures_total",
			Help: "Calls refused for a missing or wrong credential."}),
		appendFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "sessionledger_ledger_append_failures_total",
			Help: "Ledger appends that failed (the hub fails closed)."}),
		framesPaced: prometheus.NewCounter(prometheus.CounterOpts{Name: "sessionledger_client_frames_paced_total",
			Help: "Client frames read late because their session sent more than the client frame rate."}),
		lostRecorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "sessionledger_cluster_lost_recorded_total",
			Help: "Sessions of dead nodes this node recorded as lost."}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sessionledger_ledger_append_seconds",
			Help: "Time for an event to become durable.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		enforceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sessionledger_enforce_seconds",
			Help: "Time from a kick, ban or supersede event to the session's end.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
	}
	// Series with labels appear once used; create the known ones up front
	// so dashboards and alerts see zeros rather than nothing.
	for _, code := range []string{RejectBanned, RejectRateLimited, RejectNodeFull, RejectResumeRefused, RejectRevoked, RejectKicked, RejectDraining, RejectOrigin} {
		m.rejected.WithLabelValues(code)
	}
	for c := range eventpb.DisconnectCause_name {
		if c != int32(eventpb.DisconnectCause_DISCONNECT_CAUSE_UNSPECIFIED) {
			m.disconnects.WithLabelValues(Cause(c).String())
		}
	}
	m.refreshes.WithLabelValues("ok")
	// Every refusal a role table allows: an auditor calling an operator's
	// or an admin's method, an operator calling an admin's.
	// Derived from the Admin service and methodRole, so a method added to
	// either is counted here.
	for _, full := range adminServiceMethods() {
		switch methodRole(full) {
		case hubapi.RoleAdmin:
			m.adminRefused.WithLabelValues(shortMethod(full), string(hubapi.RoleOperator))
			fallthrough
		case hubapi.RoleOperator:
			m.adminRefused.WithLabelValues(shortMethod(full), string(hubapi.RoleAuditor))
		}
	}
	reg.MustRegister(m.live, m.connects, m.rejected, m.disconnects, m.notifications, m.adminCalls, m.adminRefused, m.refreshes,
		m.authFailures, m.appendFailures, m.framesPaced, m.lostRecorded, m.appendSeconds, m.enforceSeconds,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessionledger_projections_applied_seq", Help: "Last sequence number the projections applied; head minus this is their lag."},
			func() float64 { return float64(s.proj.Applied()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessionledger_up", Help: "1 while the hub can serve (ledger takes appends, projections follow the log and keep up with it), 0 otherwise."},
			func() float64 {
				if s.Err() != nil {
					return 0
				}
				return 1
			}),
		anomalies{s: s, desc: prometheus.NewDesc("sessionledger_projection_anomalies_total",
			"Records the projections met and skipped or found odd, by kind (projections.Counters).", []string{"kind"}, nil)},
	)
	return m
}

// anomalies exports the projection reducer's counters at scrape time, one
// series per kind: every uint64 field of projections.Counters but Applied
// and BansExpired (normal work, not anomalies), named in snake case, so a
// counter the projections add later is exported without a change here.
type anomalies struct {
	s    *Server
	desc *prometheus.Desc
}

func (a anomalies) Describe(ch chan<- *prometheus.Desc) { ch <- a.desc }

func (a anomalies) Collect(ch chan<- prometheus.Metric) {
	c := a.s.projectionCounters()
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Type.Kind() != reflect.Uint64 || f.Name == "Applied" || f.Name == "BansExpired" {
			continue
		}
		ch <- prometheus.MustNewConstMetric(a.desc, prometheus.CounterValue, float64(v.Field(i).Uint()), snakeCase(f.Name))
	}
}

// projectionCounters returns the reducer's counters, from the runner if it
// offers them (an optional capability), else read from its state.
func (s *Server) projectionCounters() projections.Counters {
	if r, ok := any(s.proj).(interface{ Counters() projections.Counters }); ok {
		return r.Counters()
	}
	var c projections.Counters
	s.proj.Read(func(st *projections.State) { c = st.Counters() })
	return c
}

// snakeCase turns a Go field name into a label value: UnknownTypes →
// unknown_types.
func snakeCase(name string) string {
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// adminServiceMethods are the full names of the Admin service's methods,
// unary and streaming.
func adminServiceMethods() []string {
	d := hubpb.Admin_ServiceDesc
	var out []string
	for _, m := range d.Methods {
		out = append(out, "/"+d.ServiceName+"/"+m.MethodName)
	}
	for _, st := range d.Streams {
		out = append(out, "/"+d.ServiceName+"/"+st.StreamName)
	}
	return out
}
