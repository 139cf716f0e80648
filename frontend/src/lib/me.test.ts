import { describe, expect, it } from 'vitest';
import { can, isOperator, type Me } from './me';

const me = (scopes: Me['scopes'], tenant_id = 't'): Me => ({
  id: 'k',
  kind: 'api_key',
  scopes,
  tenant_id,
  tenants: [],
});

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

describe('the operator', () => {
  it('is an admin of the default tenant, and no one else', () => {
    expect(isOperator(me(['admin'], 'default'))).toBe(true);
    expect(isOperator(me(['jobs:write'], 'default'))).toBe(false);
    expect(isOperator(me(['admin'], 'acme'))).toBe(false);
    expect(isOperator(undefined)).toBe(false);
  });
});
