import { describe, expect, it } from 'vitest';
import { finishedSeries, revenueSeries, steps } from './analytics';

const rollup = (minute: string, outcome: string, jobs: number, p95: number | null) => ({
  minute,
  kind: 'system.noop',
  queue: 'default',
  outcome,
  jobs,
  attempts: jobs,
  mean_ms: p95,
  p50_ms: p95,
  p95_ms: p95,
});

describe('analytics series', () => {
  it('puts every minute of the window on the axis, quiet ones as zeros', () => {
    const t = steps('2026-12-03T10:00:30Z', '2026-12-03T10:03:00Z', 60);
    expect(t.map((s) => new Date(s * 1000).toISOString())).toEqual([
      '2026-12-03T10:00:00.000Z',
      '2026-12-03T10:01:00.000Z',
      '2026-12-03T10:02:00.000Z',
    ]);
  });

  it('sums finished jobs by outcome and keeps the slowest p95 of a minute', () => {
    const times = steps('2026-12-03T10:00:00Z', '2026-12-03T10:02:00Z', 60);
    const f = finishedSeries(
      {
        from: '2026-12-03T10:00:00Z',
        to: '2026-12-03T10:02:00Z',
        finished: [
          rollup('2026-12-03T10:00:00Z', 'succeeded', 3, 20),
          rollup('2026-12-03T10:00:00Z', 'succeeded', 2, 80),
          rollup('2026-12-03T10:01:00Z', 'dead', 1, 5),
        ],
        submitted: [],
      },
      times,
    );
    expect(f.succeeded).toEqual([5, 0]);
    expect(f.dead).toEqual([0, 1]);
    expect(f.cancelled).toEqual([0, 0]);
    expect(f.p95).toEqual([80, 5]);
  });

  it('gives each currency its own revenue series', () => {
    const times = steps('2026-03-01T00:00:00Z', '2026-03-03T00:00:00Z', 86_400);
    const s = revenueSeries(
      {
        from: '2026-03-01T00:00:00Z',
        to: '2026-03-03T00:00:00Z',
        days: [
          { day: '2026-03-01T00:00:00Z', currency: 'USD', invoices: 1, amount_minor: 500 },
          { day: '2026-03-02T00:00:00Z', currency: 'EUR', invoices: 2, amount_minor: 1800 },
        ],
      },
      times,
    );
    expect(s).toEqual([
      { label: 'EUR', values: [0, 1800] },
      { label: 'USD', values: [500, 0] },
    ]);
  });
});
