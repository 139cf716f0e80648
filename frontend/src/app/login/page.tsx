'use client';
import { useState, type FormEvent } from 'react';
import { Problem } from '@/lib/api';
import { signIn } from '@/lib/session';
import { Field } from '@/components/Field';
import { ProblemView } from '@/components/ProblemView';

async function check(token: string): Promise<void> {
  const r = await fetch('/v1/me', { headers: { Authorization: `Bearer ${token}` } });
  const body = (await r.json().catch(() => ({}))) as { detail?: string };
  if (!r.ok) throw new Problem(r.status, body.detail ?? 'that credential is not accepted');
}

export default function Login() {
  const [error, setError] = useState<unknown>(null);
  const [key, setKey] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const done = () => window.location.assign('/');
  const withKey = async (e: FormEvent) => {
    e.preventDefault();
    try {
      await check(key.trim());
      signIn(key.trim());
      done();
    } catch (err) {
      setError(err);
    }
  };
  const withPassword = async (e: FormEvent) => {
    e.preventDefault();
    const r = await fetch('/v1/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password }),
    });
    const body = (await r.json().catch(() => ({}))) as {
      access_token?: string;
      refresh_token?: string;
      detail?: string;
    };
    if (!r.ok || !body.access_token) {
      setError(new Problem(r.status, body.detail ?? 'login failed'));
      return;
    }
    signIn(body.access_token, body.refresh_token);
    done();
  };
  return (
    <>
      <h1>Sign in</h1>
      <ProblemView error={error} />
      <section className="panel">
        <h2>With an API key</h2>
        <p className="muted">
          <code>pysaas dev</code> writes an admin key to <code>.pysaas/admin.key</code>;{' '}
          <code>pysaas admin create-key</code> makes more.
        </p>
        <form className="filters" onSubmit={withKey}>
          <Field label="API key" name="api-key" value={key} onChange={setKey} autoComplete="off" size={48} required />
          <button className="primary" type="submit">
            Sign in with key
          </button>
        </form>
      </section>
      <section className="panel">
        <h2>With your account</h2>
        <form className="filters" onSubmit={withPassword}>
          <Field label="email" type="email" value={email} onChange={setEmail} autoComplete="username" required />
          <Field
            label="password"
            type="password"
            value={password}
            onChange={setPassword}
            autoComplete="current-password"
            required
          />
          <button className="primary" type="submit">
            Log in
          </button>
        </form>
      </section>
    </>
  );
}
