package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	t0 := time.Unix(100, 0)
	ms := time.Millisecond
	samples := []sample{
		{t0, 10 * ms, true},
		{t0.Add(100 * ms), 2000 * ms, false},
		{t0.Add(2100 * ms), 30 * ms, true},
		{t0.Add(2200 * ms), 20 * ms, true},
	}
	st := summarize(samples, t0, t0.Add(2300*ms))
	if st.OK != 3 || st.Fail != 1 || st.Worstms != 2000 || st.P50ms != 20 {
		t.Errorf("%+v", st)
	}
	// From the answer at 10 ms to the next at 2130 ms.
	if st.LongestGapms != 2120 {
		t.Errorf("longest gap %v", st.LongestGapms)
	}
	if st.line() == "" || st.FirstFail == "" {
		t.Error("empty report")
	}
}

func TestProbeAgainstAServerThatStalls(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			time.Sleep(300 * time.Millisecond)
		}
		if n.Load() == 3 {
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	c := &http.Client{Timeout: time.Second}
	var samples []sample
	start := time.Now()
	for i := 0; i < 4; i++ {
		at := time.Now()
		lat, ok := probe(context.Background(), c, srv.URL)
		samples = append(samples, sample{at, lat, ok})
	}
	st := summarize(samples, start, time.Now())
	if st.OK != 3 || st.Fail != 1 || st.Worstms < 300 {
		t.Errorf("%+v", st)
	}
}
