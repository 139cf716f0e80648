'use client';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { api, call, type Schemas } from '@/lib/api';
import { Chart } from './Chart';
import { ProblemView } from './ProblemView';

type Window = Schemas['Window'];
export type Stats = Schemas['StatsView'];

/** The per-minute statistics of the last hour or day, with the window's choice. */
export function useStats(window: Window) {
  return useQuery({
    queryKey: ['stats', window],
    queryFn: () => call(() => api.GET('/v1/stats', { params: { query: { window } } })),
    // Workers add their counts every five seconds.
    refetchInterval: 10_000,
  });
}

/** Processed and failed attempts, and the wait from due to start (p50, p95), over time. */
export function StatsCharts() {
  const [window, setWindow] = useState<Window>('hour');
  const stats = useStats(window);
  const s = stats.data;
  const times = s?.series.map((p) => Date.parse(p.at) / 1000) ?? [];
  const per = s?.step_seconds === 60 ? 'per minute' : 'per quarter hour';
  return (
    <section className="panel" aria-label="Throughput">
      <div className="actions chart-head">
        <h2>Throughput</h2>
        <span className="spacer" />
        <span data-testid="workers-live">
          {s?.workers_live != null ? `${s.workers_live} live worker${s.workers_live === 1 ? '' : 's'}` : ''}
        </span>
        <label>
          window
          <select name="window" value={window} onChange={(e) => setWindow(e.target.value as Window)}>
            <option value="hour">last hour</option>
            <option value="day">last day</option>
          </select>
        </label>
      </div>
      <ProblemView error={stats.error} />
      {!s ? (
        <p className="empty">Loading statistics…</p>
      ) : (
        <div className="charts">
          <Chart
            title={`Attempts ${per}`}
            unit="attempts"
            testId="chart-processed"
            times={times}
            series={[
              { label: 'succeeded', color: 'var(--ok)', values: s.series.map((p) => p.succeeded) },
              { label: 'failed', color: 'var(--bad)', values: s.series.map((p) => p.failed) },
            ]}
          />
          <Chart
            title="Wait from due to start"
            unit="ms"
            testId="chart-wait"
            times={times}
            series={[
              { label: 'p50', color: 'var(--info)', values: s.series.map((p) => p.wait_p50_ms ?? null) },
              { label: 'p95', color: 'var(--warn)', values: s.series.map((p) => p.wait_p95_ms ?? null) },
            ]}
          />
        </div>
      )}
    </section>
  );
}
