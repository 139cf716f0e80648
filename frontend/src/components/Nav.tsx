'use client';
import Link from 'next/link';
import { useEffect, useState } from 'react';
import { credential, signOut } from '@/lib/session';
import { ThemeToggle } from './ThemeToggle';

export function Nav() {
  const [signedIn, setSignedIn] = useState(false);
  useEffect(() => setSignedIn(credential() !== null), []);
  return (
    <header className="nav">
      <span className="brand">PySaaS</span>
      <nav aria-label="Main">
        <Link href="/">Overview</Link>
        <Link href="/jobs/">Jobs</Link>
        <Link href="/jobs/?state=dead">Dead</Link>
        <Link href="/schedules/">Schedules</Link>
        <Link href="/submit/">Submit</Link>
      </nav>
      <span className="spacer" />
      <ThemeToggle />
      {signedIn ? (
        <button
          type="button"
          onClick={() => {
            signOut();
            window.location.assign('/login/');
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
