'use client';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api, call, type Schemas } from '@/lib/api';
import { payloadObject, type JobFilters } from '@/lib/filters';
import { isFinished } from '@/lib/format';
import { can, useMe } from '@/lib/me';
import { ProblemView } from './ProblemView';

type Verb = Schemas['BulkVerb'];
const DONE: Record<Verb, string> = { retry: 'retried', cancel: 'cancelled', delete: 'deleted' };

/**
 * Acts on the selected rows, or on every job matching the current filters (the server goes
 * newest first, up to 1,000 per request). `shown` and `complete` say how many the page lists and
 * whether that is all of them, so the confirmation can state the count.
 */
export function BulkBar({
  filters,
  shown,
  complete,
  selected,
  onDone,
}: {
  filters: JobFilters;
  shown: number;
  complete: boolean;
  selected: string[];
  onDone: () => void;
}) {
  const client = useQueryClient();
  const writer = can(useMe().data, 'jobs:write');
  const bulk = useMutation({
    mutationFn: (action: Verb) =>
      call(() =>
        api.POST('/v1/jobs/bulk', {
          body: {
            action,
            filter: {
              state: filters.state ?? null,
              kind: filters.kind ?? null,
              queue: filters.queue ?? null,
              ids: selected.length > 0 ? selected : null,
              payload: payloadObject(filters.payload),
            },
          },
        }),
      ),
    onSuccess: onDone,
    onSettled: () => client.invalidateQueries({ queryKey: ['jobs'] }),
  });
  // The last result stays up after its rows are gone (a delete empties the page).
  if (!writer || (shown === 0 && !bulk.data)) return null;
  const picked = selected.length > 0;
  const count = picked ? `${selected.length} selected` : complete ? `${shown}` : `at least ${shown}`;
  const which = picked ? 'selected' : 'all matching';
  const verbs: Verb[] = !filters.state
    ? ['retry', 'cancel', 'delete']
    : isFinished(filters.state)
      ? ['retry', 'delete']
      : ['cancel'];
  const run = (action: Verb) => {
    if (
      window.confirm(
        `${action[0]?.toUpperCase()}${action.slice(1)} the ${count} jobs${picked ? '' : ' matching these filters'} (those in a state it applies to)?`,
      )
    )
      bulk.mutate(action);
  };
  return (
    <div className="actions" aria-label="Bulk actions">
      {shown > 0 &&
        verbs.map((v) => (
          <button key={v} type="button" onClick={() => run(v)} disabled={bulk.isPending}>
            {v[0]?.toUpperCase()}
            {v.slice(1)} {which}
          </button>
        ))}
      {bulk.data && (
        <span role="status">
          {bulk.data.changed} of {bulk.data.matched} {DONE[bulk.data.action]}
          {bulk.data.more ? ' (more match: run it again)' : ''}
        </span>
      )}
      <ProblemView error={bulk.error} />
    </div>
  );
}
