import type { Metadata } from 'next';
import type { ReactNode } from 'react';
import { Providers } from '@/components/Providers';
import { Mounted } from '@/components/Mounted';
import { Nav } from '@/components/Nav';
import './globals.css';

export const metadata: Metadata = { title: 'PySaaS', description: 'Queues, jobs and schedules' };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <Providers>
          <Mounted>
            <Nav />
            <main>{children}</main>
          </Mounted>
        </Providers>
      </body>
    </html>
  );
}
