'use client';
import { useQuery } from '@tanstack/react-query';
import { api, call } from '@/lib/api';
import { finishedSeries, revenueSeries, steps } from '@/lib/analytics';
import { isOperator, useMe } from '@/lib/me';
import { Chart } from './Chart';
import { ProblemView } from './ProblemView';

const MINUTE = 60;
const DAY = 86_400;

const COLOURS = ['var(--ok)', 'var(--info)', 'var(--warn)', 'var(--bad)'];

/** Charts from the analytics stream's rollups (`[events] enabled`): finished jobs and run
 * times over the last hour, and for the operator revenue per day. Shown once there are any. */
export function AnalyticsCharts() {
  const me = useMe().data;
  const jobs = useQuery({
    queryKey: ['analytics', 'jobs'],
    queryFn: () => call(() => api.GET('/v1/analytics/jobs')),
    refetchInterval: 10_000,
  });
  const operator = isOperator(me);
  const revenue = useQuery({
    queryKey: ['analytics', 'revenue'],
    queryFn: () => call(() => api.GET('/v1/analytics/revenue')),
    refetchInterval: 60_000,
    enabled: operator,
  });
  const a = jobs.data;
  const r = operator ? revenue.data : undefined;
  const hasJobs = !!a && (a.finished.length > 0 || a.submitted.length > 0);
  const hasRevenue = !!r && r.days.length > 0;
  if (!hasJobs && !hasRevenue) {
    return jobs.error ? <ProblemView error={jobs.error} /> : null;
  }
  const minutes = a ? steps(a.from, a.to, MINUTE) : [];
  const f = a ? finishedSeries(a, minutes) : undefined;
  const days = r ? steps(r.from, r.to, DAY) : [];
  return (
    <section className="panel" aria-label="Analytics">
      <div className="actions chart-head">
        <h2>Analytics</h2>
        <span className="spacer" />
        <span className="muted">from the event stream</span>
      </div>
      <div className="charts">
        {f && (
          <Chart
            title="Jobs finished per minute"
            unit="jobs"
            testId="chart-analytics-finished"
            times={minutes}
            series={[
              { label: 'succeeded', color: 'var(--ok)', values: f.succeeded },
              { label: 'dead', color: 'var(--bad)', values: f.dead },
              { label: 'cancelled', color: 'var(--warn)', values: f.cancelled },
            ]}
          />
        )}
        {f && (
          <Chart
            title="Run time (p95, slowest kind)"
            unit="ms"
            testId="chart-analytics-runtime"
            times={minutes}
            series={[{ label: 'p95', color: 'var(--info)', values: f.p95 }]}
          />
        )}
        {hasRevenue && r && (
          <Chart
            title="Revenue per day (minor units)"
            unit="minor units"
            testId="chart-analytics-revenue"
            times={days}
            series={revenueSeries(r, days).map((s, i) => ({
              ...s,
              color: COLOURS[i % COLOURS.length] ?? 'var(--info)',
            }))}
          />
        )}
      </div>
    </section>
  );
}
