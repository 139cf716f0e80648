import { describe, expect, it } from 'vitest';
import { can, type Me } from './me';

const me = (scopes: Me['scopes']): Me => ({ id: 'k', kind: 'api_key', scopes, tenant_id: 't' });

describe('scopes decide which controls are offered', () => {
  it('a reader may not write', () => {
    expect(can(me(['jobs:read']), 'jobs:write')).toBe(false);
  });
  it('admin holds every scope', () => {
    expect(can(me(['admin']), 'schedules:write')).toBe(true);
  });
  it('nobody signed in may do nothing', () => {
    expect(can(undefined, 'jobs:read')).toBe(false);
  });
});
