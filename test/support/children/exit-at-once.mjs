// Test child: writes a line to stderr and exits at once with the code given (default 3).
console.error('failing on purpose');
process.exit(Number(process.argv[2] ?? 3));
