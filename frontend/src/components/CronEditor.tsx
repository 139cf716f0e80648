'use client';
import { keepPreviousData, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useState, type FormEvent } from 'react';
import { api, call, type Schedule, type Schemas } from '@/lib/api';

/** A zone name as typed; the server names it in its 422 if it knows no such zone. */
type Zone = NonNullable<Schemas['TimeZone']>;
import { ProblemView } from './ProblemView';

/** The value after it stopped changing for `ms`. */
function useSettled<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

/** `iso` as local time in `zone` (the zone the preview was made for); UTC if the browser has no such zone. */
function inZone(iso: string, zone: string): string {
  try {
    return new Date(iso).toLocaleString(undefined, { timeZone: zone, timeZoneName: 'short' });
  } catch {
    return `${iso} (UTC)`;
  }
}

/** Edits a schedule's cron expression and zone, previewing the next fire times before saving. */
export function CronEditor({ schedule, onDone }: { schedule: Schedule; onDone: () => void }) {
  const client = useQueryClient();
  const [cron, setCron] = useState(schedule.cron);
  const [timezone, setTimezone] = useState(schedule.timezone);
  const wanted = { cron: useSettled(cron, 300), timezone: useSettled(timezone, 300) };
  const preview = useQuery({
    queryKey: ['cron-preview', wanted],
    queryFn: () =>
      call(() =>
        api.POST('/v1/cron/preview', { body: { cron: wanted.cron, timezone: wanted.timezone as Zone, count: 5 } }),
      ),
    retry: false,
    // The last preview stays up while the next one loads.
    placeholderData: keepPreviousData,
  });
  const save = useMutation({
    mutationFn: () =>
      call(() =>
        api.PATCH('/v1/schedules/{name}', {
          params: { path: { name: schedule.name } },
          body: { cron, timezone: timezone as Zone },
        }),
      ),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: ['schedules'] });
      onDone();
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <form onSubmit={submit} aria-label={`Edit ${schedule.name}`}>
      <div className="filters">
        <label>
          cron (seconds first)
          <input name="cron" value={cron} onChange={(e) => setCron(e.target.value)} required />
        </label>
        <label>
          time zone
          <input name="timezone" value={timezone} onChange={(e) => setTimezone(e.target.value)} required />
        </label>
        <button className="primary" type="submit" disabled={!preview.data || save.isPending}>
          Save
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
      <ProblemView error={preview.error ?? save.error} />
      {preview.data && (
        <ol aria-label="Next fire times" data-testid="preview" data-zone={wanted.timezone} data-cron={wanted.cron}>
          {preview.data.next_fire_times.map((t) => (
            <li key={t}>{inZone(t, wanted.timezone)}</li>
          ))}
        </ol>
      )}
    </form>
  );
}
