'use client';
import { useMutation } from '@tanstack/react-query';
import { api, call } from '@/lib/api';
import type { Me } from '@/lib/me';
import { refreshSettled, refreshToken, signIn } from '@/lib/session';
import { ProblemView } from './ProblemView';

/** For a user in several tenants: act for another one (the session moves there; the page reloads). */
export function TenantSwitch({ me }: { me: Me }) {
  const change = useMutation({
    mutationFn: async (tenant_id: string) => {
      // A refresh under way would spend the same token: let it finish, then use the new one.
      await refreshSettled();
      return call(() => api.POST('/v1/auth/switch', { body: { tenant_id, refresh_token: refreshToken() ?? '' } }));
    },
    onSuccess: (tokens) => {
      signIn(tokens.access_token, tokens.refresh_token);
      window.location.assign('/');
    },
  });
  if (me.tenants.length < 2) return null;
  return (
    <>
      <label>
        tenant
        <select
          name="tenant"
          value={me.tenant_id}
          disabled={change.isPending}
          onChange={(e) => change.mutate(e.target.value)}
        >
          {me.tenants.map((t) => (
            <option key={t.id} value={t.id}>
              {t.name} ({t.role})
            </option>
          ))}
        </select>
      </label>
      <ProblemView error={change.error} />
    </>
  );
}
