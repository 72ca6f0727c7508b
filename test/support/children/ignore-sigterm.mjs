// Test child: ignores SIGTERM, and so does the grandchild it starts in its process group.
import { spawn } from 'node:child_process';

process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
const grandchild = spawn(
  process.execPath,
  ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"],
  { stdio: 'ignore' },
);
console.log(`grandchild ${grandchild.pid}`);
setInterval(() => {}, 1000);
