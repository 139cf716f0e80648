'use client';
import { useRouter } from 'next/navigation';
import { useState, type FormEvent } from 'react';
import { searchOf, type JobFilters } from '@/lib/filters';
import { STATES, type State } from '@/lib/format';
import { Field } from './Field';

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
      <Field
        label="kind"
        value={draft.kind ?? ''}
        onChange={(kind) => setDraft({ ...draft, kind })}
        placeholder="any"
      />
      <Field
        label="queue"
        value={draft.queue ?? ''}
        onChange={(queue) => setDraft({ ...draft, queue })}
        placeholder="any"
      />
      <Field
        label="payload contains"
        name="payload"
        value={draft.payload ?? ''}
        onChange={(payload) => setDraft({ ...draft, payload })}
        placeholder='{"user_id": 42}'
      />
      <button type="submit">Apply</button>
    </form>
  );
}
