'use client';
import { useRouter } from 'next/navigation';
import { useState, type FormEvent } from 'react';
import { searchOf, type JobFilters } from '@/lib/filters';
import { STATES, type State } from '@/lib/format';

/** Filters as a form whose submission becomes the URL (so every view can be bookmarked). */
export function JobFiltersForm({ filters }: { filters: JobFilters }) {
  const router = useRouter();
  const [draft, setDraft] = useState(filters);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    router.push(`/jobs/?${searchOf({ ...draft, cursor: undefined })}`);
  };
  return (
    <form className="filters" onSubmit={submit} aria-label="Filters">
      <label>
        state
        <select
          value={draft.state ?? ''}
          onChange={(e) => setDraft({ ...draft, state: (e.target.value || undefined) as State | undefined })}
        >
          <option value="">any</option>
          {STATES.map((s) => (
            <option key={s}>{s}</option>
          ))}
        </select>
      </label>
      <label>
        kind
        <input
          value={draft.kind ?? ''}
          onChange={(e) => setDraft({ ...draft, kind: e.target.value })}
          placeholder="any"
        />
      </label>
      <label>
        queue
        <input
          value={draft.queue ?? ''}
          onChange={(e) => setDraft({ ...draft, queue: e.target.value })}
          placeholder="any"
        />
      </label>
      <label>
        payload contains
        <input
          name="payload"
          value={draft.payload ?? ''}
          onChange={(e) => setDraft({ ...draft, payload: e.target.value })}
          placeholder='{"user_id": 42}'
        />
      </label>
      <button type="submit">Apply</button>
    </form>
  );
}
