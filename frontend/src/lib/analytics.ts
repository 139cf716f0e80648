import type { Schemas } from './api';

type JobAnalytics = Schemas['JobAnalytics'];
type Revenue = Schemas['RevenueAnalytics'];

/** Every step from `from` to `to` (seconds), so that quiet minutes or days show as zeros. */
export function steps(from: string, to: string, step: number): number[] {
  const start = Math.floor(Date.parse(from) / 1000 / step) * step;
  const end = Date.parse(to) / 1000;
  const out: number[] = [];
  for (let t = start; t < end; t += step) out.push(t);
  return out;
}

/** The rollups' finished jobs per minute by outcome, and the run time's p95 (the slowest
 * kind's, per minute), on `times`. */
export function finishedSeries(a: JobAnalytics, times: number[]) {
  const at = new Map(times.map((t, i) => [t, i]));
  const count = (outcome: string) => {
    const values: (number | null)[] = times.map(() => 0);
    for (const r of a.finished) {
      const i = at.get(Date.parse(r.minute) / 1000);
      if (i !== undefined && r.outcome === outcome) values[i] = (values[i] ?? 0) + r.jobs;
    }
    return values;
  };
  const p95: (number | null)[] = times.map(() => null);
  for (const r of a.finished) {
    const i = at.get(Date.parse(r.minute) / 1000);
    if (i !== undefined && r.p95_ms != null) p95[i] = Math.max(p95[i] ?? 0, r.p95_ms);
  }
  return { succeeded: count('succeeded'), dead: count('dead'), cancelled: count('cancelled'), p95 };
}

/** Revenue per day, one series per currency (major units are the currency's business: the
 * chart shows minor units). */
export function revenueSeries(r: Revenue, times: number[]) {
  const at = new Map(times.map((t, i) => [t, i]));
  const currencies = [...new Set(r.days.map((d) => d.currency))].sort();
  return currencies.map((currency) => {
    const values: (number | null)[] = times.map(() => 0);
    for (const d of r.days) {
      const i = at.get(Date.parse(d.day) / 1000);
      if (i !== undefined && d.currency === currency) values[i] = (values[i] ?? 0) + d.amount_minor;
    }
    return { label: currency, values };
  });
}
