'use client';
import type { RJSFSchema } from '@rjsf/utils';
import { useMutation, useQuery } from '@tanstack/react-query';
import { useRouter, useSearchParams } from 'next/navigation';
import { Suspense, useEffect, useState, type FormEvent } from 'react';
import { api, call, type Schemas } from '@/lib/api';
import { PayloadForm } from '@/components/PayloadForm';
import { ProblemView } from '@/components/ProblemView';

type Submission = Schemas['SubmitJob'];

function SubmitForm() {
  const router = useRouter();
  const cloneOf = useSearchParams().get('clone');
  const kinds = useQuery({ queryKey: ['kinds'], queryFn: () => call(() => api.GET('/v1/kinds')) });
  const source = useQuery({
    queryKey: ['job', cloneOf],
    queryFn: () => call(() => api.GET('/v1/jobs/{id}', { params: { path: { id: cloneOf ?? '' } } })),
    enabled: cloneOf !== null,
    // Prefilled once: a refetch must not overwrite what the user has edited since.
    staleTime: Infinity,
    refetchOnWindowFocus: false,
  });
  const [kind, setKind] = useState('');
  const [payload, setPayload] = useState<unknown>({});
  const [valid, setValid] = useState(true);
  const [queue, setQueue] = useState('');
  const [priority, setPriority] = useState('');
  const [runAt, setRunAt] = useState('');
  const [key, setKey] = useState('');
  useEffect(() => {
    if (source.data) {
      setKind(source.data.kind);
      setPayload(source.data.payload);
      setQueue(source.data.queue);
      setPriority(String(source.data.priority));
    }
  }, [source.data]);
  const spec = kinds.data?.kinds.find((k) => k.kind === kind);
  const submit = useMutation({
    mutationFn: () => {
      const body = {
        kind,
        payload,
        ...(queue && { queue }),
        ...(priority && { priority: Number(priority) }),
        ...(runAt && { run_at: new Date(runAt).toISOString() }),
        ...(key && { idempotency_key: key }),
      } as Submission;
      return call(() => api.POST('/v1/jobs', { body }));
    },
    onSuccess: (job) => router.push(`/jobs/?id=${job.id}`),
  });
  const send = (e: FormEvent) => {
    e.preventDefault();
    submit.mutate();
  };
  return (
    <>
      <h1>Submit a job</h1>
      <ProblemView error={kinds.error ?? submit.error} />
      <form onSubmit={send} aria-label="Submit a job">
        <section className="panel">
          <label>
            kind
            <select
              name="kind"
              value={kind}
              onChange={(e) => {
                setKind(e.target.value);
                setPayload({});
              }}
              required
            >
              <option value="">choose a kind…</option>
              {kinds.data?.kinds
                .filter((k) => k.submittable)
                .map((k) => (
                  <option key={k.kind} value={k.kind}>
                    {k.kind} (queue {k.queue})
                  </option>
                ))}
            </select>
          </label>
        </section>
        {spec && (
          <section className="panel" aria-label="Payload">
            <h2>Payload</h2>
            <PayloadForm
              key={kind}
              schema={spec.payload_schema as RJSFSchema}
              value={payload}
              onChange={(p, ok) => {
                setPayload(p);
                setValid(ok);
              }}
            />
          </section>
        )}
        <section className="panel">
          <div className="filters">
            <label>
              queue
              <input
                value={queue}
                onChange={(e) => setQueue(e.target.value)}
                placeholder={spec?.queue ?? 'the kind’s'}
              />
            </label>
            <label>
              priority (0–9)
              <input type="number" min={0} max={9} value={priority} onChange={(e) => setPriority(e.target.value)} />
            </label>
            <label>
              run at (empty: now)
              <input type="datetime-local" value={runAt} onChange={(e) => setRunAt(e.target.value)} />
            </label>
            <label>
              idempotency key
              <input value={key} onChange={(e) => setKey(e.target.value)} />
            </label>
          </div>
        </section>
        <button className="primary" type="submit" disabled={!spec || !valid || submit.isPending}>
          Submit
        </button>
      </form>
    </>
  );
}

export default function SubmitPage() {
  return (
    <Suspense fallback={<p className="empty">Loading…</p>}>
      <SubmitForm />
    </Suspense>
  );
}
