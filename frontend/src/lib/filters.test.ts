import { describe, expect, it } from 'vitest';
import { filtersFrom, searchOf } from './filters';

describe('job filters in the URL', () => {
  it('round-trip', () => {
    const filters = { state: 'dead', kind: 'system.fail', queue: 'billing' } as const;
    expect(filtersFrom(new URLSearchParams(searchOf(filters)))).toEqual(filters);
  });
  it('drop unknown states and empty values', () => {
    expect(filtersFrom(new URLSearchParams('state=bogus&kind=&queue=%20'))).toEqual({});
  });
  it('carry a payload search', () => {
    const filters = { payload: '{"user_id":42}' };
    expect(filtersFrom(new URLSearchParams(searchOf(filters)))).toEqual(filters);
  });
  it('leave unset filters out of the query', () => {
    expect(searchOf({ queue: 'mail' })).toBe('queue=mail');
  });
});
