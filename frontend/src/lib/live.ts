'use client';
// Live updates: one Server-Sent Events stream per tab (`GET /v1/events/stream`) tells the
// dashboard that the tenant's jobs changed, in whichever process; the queries showing jobs and
// queues are then refetched. While the stream is up nothing polls; while it is down (or before
// it opens) pages fall back to polling. A hidden tab closes the stream and reopens it (and
// refetches) when shown again.
import { fetchEventSource } from '@microsoft/fetch-event-source';
import { useQueryClient } from '@tanstack/react-query';
import { createContext, useContext, useEffect, useState } from 'react';
import { credential, refreshSession } from './session';

/** The query keys (first parts) whose data follows jobs' states. A query with `meta: { live:
 * false }` is left alone (an expensive search runs when asked, not on every change). */
const LIVE_KEYS: readonly unknown[] = ['jobs', 'job', 'queues'];
/** Pause before reconnecting a failed stream. */
const RETRY_MS = 3000;

export const LiveContext = createContext(false);

/** Whether live updates are flowing. */
export function useLive(): boolean {
  return useContext(LiveContext);
}

/** A query's polling interval: none while live updates flow, `ms` otherwise. */
export function usePoll(ms: number): number | false {
  return useLive() ? false : ms;
}

/** A fetch that sends the credential and, on a 401 with a session, refreshes it once. */
async function authorized(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const attempt = (token: string | null) => {
    const headers = new Headers(init?.headers);
    if (token) headers.set('Authorization', `Bearer ${token}`);
    return fetch(input, { ...init, headers });
  };
  const sent = credential();
  const response = await attempt(sent);
  if (response.status === 401 && (await refreshSession(sent))) return attempt(credential());
  return response;
}

/** Keeps this tab's event stream open while signed in; returns whether it is up. */
export function useLiveStream(): boolean {
  const client = useQueryClient();
  const [live, setLive] = useState(false);
  useEffect(() => {
    if (credential() === null) return;
    const abort = new AbortController();
    const refresh = () =>
      void client.invalidateQueries({
        predicate: (q) => LIVE_KEYS.includes(q.queryKey[0]) && q.meta?.live !== false,
      });
    void fetchEventSource('/v1/events/stream', {
      signal: abort.signal,
      openWhenHidden: false,
      fetch: authorized,
      onopen: async (response) => {
        if (!response.ok) throw new Error(`event stream refused (${response.status})`);
      },
      onmessage: (message) => {
        if (message.event === 'ready') setLive(true);
        // After (re)connecting, changes may have been missed: refetch as after a change.
        if (message.event === 'ready' || message.event === 'changed') refresh();
      },
      onclose: () => {
        setLive(false);
        throw new Error('event stream closed');
      },
      onerror: () => {
        setLive(false);
        return RETRY_MS;
      },
    });
    return () => abort.abort();
  }, [client]);
  return live;
}
