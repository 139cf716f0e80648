'use client';
import { useQuery } from '@tanstack/react-query';
import { api, call } from '@/lib/api';
import { usePoll } from '@/lib/live';
import { QueueTable } from '@/components/QueueTable';
import { ProblemView } from '@/components/ProblemView';

export default function Overview() {
  const queues = useQuery({
    queryKey: ['queues'],
    queryFn: () => call(() => api.GET('/v1/queues')),
    refetchInterval: usePoll(5000),
  });
  return (
    <>
      <h1>Overview</h1>
      <section className="panel" aria-label="Queues">
        <ProblemView error={queues.error} />
        <QueueTable queues={queues.data?.queues} />
      </section>
    </>
  );
}
