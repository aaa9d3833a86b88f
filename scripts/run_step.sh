#!/bin/sh
# Run one step of a Makefile pipeline with its output in a log file, so that steps running side by side
# (make -j) do not interleave on the terminal: one line when the step starts, one when it ends (with its wall
# seconds, also appended to a timings file), and the last lines of the log when it fails.
#   scripts/run_step.sh NAME LOG TIMINGS -- COMMAND [ARG ...]
set -u
if [ $# -lt 5 ] || [ "$4" != "--" ]; then
	echo "usage: $0 NAME LOG TIMINGS -- COMMAND [ARG ...]" >&2
	exit 2
fi
name=$1 log=$2 timings=$3
shift 4
mkdir -p "$(dirname "$log")" "$(dirname "$timings")"
start=$(date +%s)
echo "$(date +%H:%M:%S) $name: started (log: $log)"
"$@" >"$log" 2>&1
status=$?
seconds=$(($(date +%s) - start))
if [ "$status" -eq 0 ]; then
	printf '%s\t%s\t%s\n' "$name" "$seconds" "ok" >>"$timings"
	echo "$(date +%H:%M:%S) $name: done in ${seconds} s"
else
	printf '%s\t%s\t%s\n' "$name" "$seconds" "failed (exit $status)" >>"$timings"
	echo "$(date +%H:%M:%S) $name: FAILED (exit $status) after ${seconds} s; the end of $log:" >&2
	tail -n 30 "$log" | tr '\r' '\n' | tail -n 30 >&2
fi
exit "$status"
