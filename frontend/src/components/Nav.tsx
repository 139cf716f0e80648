'use client';
import Link from 'next/link';
import { useEffect, useState } from 'react';
import { useLive } from '@/lib/live';
import { can, isOperator, useMe } from '@/lib/me';
import { credential, logOut } from '@/lib/session';
import { ThemeToggle } from './ThemeToggle';

export function Nav() {
  const [signedIn, setSignedIn] = useState(false);
  const me = useMe().data;
  const live = useLive();
  useEffect(() => setSignedIn(credential() !== null), []);
  return (
    <header className="nav">
      <span className="brand">PySaaS</span>
      <nav aria-label="Main">
        <Link href="/">Overview</Link>
        <Link href="/jobs/">Jobs</Link>
        <Link href="/jobs/?state=dead">Dead</Link>
        <Link href="/schedules/">Schedules</Link>
        {can(me, 'jobs:write') && <Link href="/submit/">Submit</Link>}
        {isOperator(me) && <Link href="/workers/">Workers</Link>}
        {can(me, 'admin') && <Link href="/audit/">Audit</Link>}
        {signedIn && <Link href="/account/">Account</Link>}
      </nav>
      <span className="spacer" />
      <span
        className={live ? 'live on' : 'live'}
        data-testid="live"
        data-live={live}
        title={live ? 'Live updates on' : 'Live updates off: refreshing every few seconds'}
      >
        {live ? '● live' : '○ polling'}
      </span>
      <ThemeToggle />
      {signedIn ? (
        <button
          type="button"
          onClick={() => {
            void logOut().then(() => window.location.assign('/login/'));
          }}
        >
          Sign out
        </button>
      ) : (
        <Link href="/login/">Sign in</Link>
      )}
    </header>
  );
}
