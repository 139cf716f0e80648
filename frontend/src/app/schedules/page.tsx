'use client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Fragment, useState } from 'react';
import { api, call, type Schedule } from '@/lib/api';
import { age } from '@/lib/format';
import { CronEditor } from '@/components/CronEditor';
import { ProblemView } from '@/components/ProblemView';
import { can, useMe } from '@/lib/me';

type Action = 'pause' | 'resume' | 'trigger';

function ScheduleRow({
  s,
  onAction,
  onEdit,
}: {
  s: Schedule;
  onAction?: (name: string, action: Action) => void;
  onEdit?: () => void;
}) {
  return (
    <tr>
      <td>{s.name}</td>
      <td>
        <code>{s.cron}</code> <span className="muted">{s.timezone}</span>
      </td>
      <td>{s.kind}</td>
      <td>
        {s.paused ? (
          <span className="badge state-cancelled">paused</span>
        ) : (
          (s.next_fire_times[0] && age(s.next_fire_times[0])) || '—'
        )}
      </td>
      <td>{age(s.last_fire_at)}</td>
      <td className="actions">
        {onAction && (
          <>
            <button type="button" onClick={() => onAction(s.name, s.paused ? 'resume' : 'pause')}>
              {s.paused ? 'Resume' : 'Pause'}
            </button>
            <button
              type="button"
              onClick={() => window.confirm(`Trigger ${s.name} now?`) && onAction(s.name, 'trigger')}
            >
              Trigger now
            </button>
            <button type="button" onClick={onEdit}>
              Edit cron
            </button>
          </>
        )}
      </td>
    </tr>
  );
}

export default function Schedules() {
  const client = useQueryClient();
  const writer = can(useMe().data, 'schedules:write');
  const [editing, setEditing] = useState<string | null>(null);
  const list = useQuery({
    queryKey: ['schedules'],
    queryFn: () => call(() => api.GET('/v1/schedules')),
    refetchInterval: 5000,
  });
  const act = useMutation({
    mutationFn: async ({ name, action }: { name: string; action: Action }): Promise<void> => {
      const params = { params: { path: { name } } };
      if (action === 'pause') await call(() => api.POST('/v1/schedules/{name}/pause', params));
      else if (action === 'resume') await call(() => api.POST('/v1/schedules/{name}/resume', params));
      else await call(() => api.POST('/v1/schedules/{name}/trigger', params));
    },
    onSettled: () => client.invalidateQueries({ queryKey: ['schedules'] }),
  });
  return (
    <>
      <h1>Schedules</h1>
      <ProblemView error={list.error ?? act.error} />
      <section className="panel">
        {list.isPending ? (
          <p className="empty">Loading schedules…</p>
        ) : list.data && list.data.schedules.length === 0 ? (
          <p className="empty">No schedules: create one with POST /v1/schedules or `pysaas schedules create`.</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th>name</th>
                <th>when</th>
                <th>kind</th>
                <th>next</th>
                <th>last</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {list.data?.schedules.map((s) => (
                <Fragment key={s.name}>
                  <ScheduleRow
                    s={s}
                    onAction={writer ? (name, action) => act.mutate({ name, action }) : undefined}
                    onEdit={() => setEditing(s.name)}
                  />
                  {editing === s.name && (
                    <tr>
                      <td colSpan={6}>
                        <CronEditor schedule={s} onDone={() => setEditing(null)} />
                      </td>
                    </tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
