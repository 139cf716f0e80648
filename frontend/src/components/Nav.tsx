'use client';
import Link from 'next/link';
import { useEffect, useState } from 'react';
import { can, isOperator, useMe } from '@/lib/me';
import { credential, logOut } from '@/lib/session';
import { ThemeToggle } from './ThemeToggle';

export function Nav() {
  const [signedIn, setSignedIn] = useState(false);
  const me = useMe().data;
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
        {signedIn && <Link href="/account/">Account</Link>}
      </nav>
      <span className="spacer" />
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
