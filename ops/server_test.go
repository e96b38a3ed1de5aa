package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/ops"
)

// pinger answers like a Redis that is up or down.
type pinger struct{ err error }

func (p pinger) Ping(context.Context) error { return p.err }

func TestServer_Readyz(t *testing.T) {
	tests := []struct {
		role   cdc.Role
		redis  error
		code   int
		inBody string
	}{
		{cdc.RoleStarting, nil, http.StatusServiceUnavailable, "role starting"},
		{cdc.RoleStandby, nil, http.StatusServiceUnavailable, "role standby"},
		{cdc.RoleActive, errors.New("connection refused"), http.StatusServiceUnavailable, "redis unreachable"},
		{cdc.RoleActive, nil, http.StatusOK, "role active"},
	}
	for _, tt := range tests {
		t.Run(tt.role.String(), func(t *testing.T) {
			m := ops.NewMetrics(zap.NewNop())
			m.RoleChanged(tt.role)
			h := ops.NewServer("", "slot1", m, pinger{tt.redis}, zap.NewNop()).Handler()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.inBody) {
				t.Errorf("/readyz = %d %q, want %d containing %q", rec.Code, rec.Body.String(), tt.code, tt.inBody)
			}
		})
	}
}

func TestServer_Status(t *testing.T) {
	m := ops.NewMetrics(zap.NewNop())
	m.RoleChanged(cdc.RoleActive)
	m.Position(0x1A2B3C4, 0x1A2B3C4+500)
	h := ops.NewServer("", "slot1", m, pinger{}, zap.NewNop()).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	var st map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("/status: %v: %s", err, rec.Body)
	}
	want := map[string]any{"role": "active", "slot": "slot1", "confirmed_lsn": "0/1A2B3C4", "lag_bytes": float64(500)}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("/status %s = %v, want %v", k, st[k], v)
		}
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s = %d", path, rec.Code)
		}
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `invalidator_role{role="active"} 1`) || !strings.Contains(rec.Body.String(), "invalidator_replication_lag_bytes 500") {
		t.Errorf("/metrics lacks the role or the lag:\n%s", rec.Body)
	}
}
