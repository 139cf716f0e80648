import { describe, expect, it } from 'vitest';
import { filtersFrom, payloadObject, searchOf } from './filters';

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
  it('give a bulk action the payload search as an object, or none', () => {
    expect(payloadObject('{"user_id":42}')).toEqual({ user_id: 42 });
    expect(payloadObject(undefined)).toBeNull();
    for (const bad of [
      '[1]',
      '42',
      'null',
      '{"user_id":',
      'user_id=42',
      '{"a":{"b":1}}',
      '{"a":[1]}',
      '{"id":1234567890123456789}',
    ])
      expect(payloadObject(bad)).toBeNull();
  });
});
