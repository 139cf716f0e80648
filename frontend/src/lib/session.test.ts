import { afterEach, describe, expect, it, vi } from 'vitest';

function storage(initial: Record<string, string>) {
  const items = new Map(Object.entries(initial));
  return {
    getItem: (k: string) => items.get(k) ?? null,
    setItem: (k: string, v: string) => void items.set(k, v),
    removeItem: (k: string) => void items.delete(k),
  };
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.resetModules();
});

describe('session refresh', () => {
  it('exchanges the refresh token once however many requests failed together', async () => {
    vi.stubGlobal('window', { localStorage: storage({ 'pysaas.credential': 'old', 'pysaas.refresh': 'rt_1' }) });
    const fetch = vi.fn(async () => new Response(JSON.stringify({ access_token: 'new', refresh_token: 'rt_2' })));
    vi.stubGlobal('fetch', fetch);
    const { refreshSession, credential } = await import('./session');
    const results = await Promise.all([refreshSession('old'), refreshSession('old'), refreshSession('old')]);
    expect(results).toEqual([true, true, true]);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(credential()).toBe('new');
    // A request that failed with the old token after the exchange does not exchange again.
    expect(await refreshSession('old')).toBe(true);
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('keeps the session when the refresh is only rate limited', async () => {
    vi.stubGlobal('window', { localStorage: storage({ 'pysaas.credential': 'old', 'pysaas.refresh': 'rt_1' }) });
    vi.stubGlobal(
      'fetch',
      vi.fn(async () => new Response('{}', { status: 429 })),
    );
    const { refreshSession, credential } = await import('./session');
    expect(await refreshSession('old')).toBe(false);
    expect(credential()).toBe('old');
  });
});
