'use client';
import { useQuery } from '@tanstack/react-query';
import { api, call, type Schemas } from './api';
import { credential } from './session';

export type Me = Schemas['Me'];
export type Scope = Schemas['ScopeName'];

/** Whether `me` holds `scope` (`admin` holds every scope). */
export function can(me: Me | undefined, scope: Scope): boolean {
  return !!me && (me.scopes.includes('admin') || me.scopes.includes(scope));
}

/** Whether `me` is the operator: an admin of the `default` tenant, whose say covers what every
 * tenant shares (queues, worker processes). */
export function isOperator(me: Me | undefined): boolean {
  return !!me && me.tenant_id === 'default' && can(me, 'admin');
}

/** The signed-in credential's identity and scopes; write controls are offered only with them. */
export function useMe() {
  return useQuery({
    queryKey: ['me'],
    queryFn: () => call(() => api.GET('/v1/me')),
    enabled: typeof window !== 'undefined' && credential() !== null,
    staleTime: 60_000,
  });
}
