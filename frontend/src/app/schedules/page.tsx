'use client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, call, type Schedule } from '@/lib/api';
import { age } from '@/lib/format';
import { CronEditor } from '@/components/CronEditor';
import { DataTable, type Column } from '@/components/DataTable';
import { ProblemView } from '@/components/ProblemView';
import { can, useMe } from '@/lib/me';

type Action = 'pause' | 'resume' | 'trigger';

function ScheduleActions({
  s,
  onAction,
  onEdit,
}: {
  s: Schedule;
  onAction: (name: string, action: Action) => void;
  onEdit: () => void;
}) {
  return (
    <>
      <button type="button" onClick={() => onAction(s.name, s.paused ? 'resume' : 'pause')}>
        {s.paused ? 'Resume' : 'Pause'}
      </button>
      <button type="button" onClick={() => window.confirm(`Trigger ${s.name} now?`) && onAction(s.name, 'trigger')}>
        Trigger now
      </button>
      <button type="button" onClick={onEdit}>
        Edit cron
      </button>
    </>
  );
}

const COLUMNS: Column<Schedule>[] = [
  { header: 'name', cell: (s) => s.name },
  {
    header: 'when',
    cell: (s) => (
      <>
        <code>{s.cron}</code> <span className="muted">{s.timezone}</span>
      </>
    ),
  },
  { header: 'kind', cell: (s) => s.kind },
  {
    header: 'next',
    cell: (s) =>
      s.paused ? (
        <span className="badge state-cancelled">paused</span>
      ) : (
        (s.next_fire_times[0] && age(s.next_fire_times[0])) || '—'
      ),
  },
  { header: 'last', cell: (s) => age(s.last_fire_at) },
];

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
  const actions: Column<Schedule> = {
    header: '',
    className: 'actions',
    cell: (s) => (
      <ScheduleActions
        s={s}
        onAction={(name, action) => act.mutate({ name, action })}
        onEdit={() => setEditing(s.name)}
      />
    ),
  };
  return (
    <>
      <h1>Schedules</h1>
      <ProblemView error={list.error ?? act.error} />
      <section className="panel">
        <DataTable
          columns={writer ? [...COLUMNS, actions] : COLUMNS}
          rows={list.data?.schedules}
          failed={!!list.error}
          rowKey={(s) => s.name}
          noun="schedules"
          empty="No schedules: create one with POST /v1/schedules or `pysaas schedules create`."
          below={(s) => editing === s.name && <CronEditor schedule={s} onDone={() => setEditing(null)} />}
        />
      </section>
    </>
  );
}
