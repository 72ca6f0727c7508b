// Test child: runs for the milliseconds given, then exits with code 1.
setTimeout(() => process.exit(1), Number(process.argv[2] ?? 500));
