#!/usr/bin/env bash
# local_rsh.sh — stands in for ssh as Open MPI's launch agent (--mca plm_rsh_agent) in the
# multi-node tests: `local_rsh.sh [ssh options] HOST COMMAND...` runs COMMAND on this machine,
# whatever HOST is. mpirun then believes the hostfile's names are separate nodes: it starts one
# daemon per "node" through this agent, the daemons connect back over TCP (oob), and ranks on
# different "nodes" exchange data over the TCP BTL — the traffic pattern of a real multi-node
# job, on one machine.
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in
    -o | -p | -l | -i | -F) shift 2 ;;
    *) shift ;;
  esac
done
[[ $# -ge 2 ]] || { echo "local_rsh.sh: usage: local_rsh.sh [options] HOST COMMAND..." >&2; exit 255; }
host=$1
shift
# Real nodes each have their own /tmp, where a daemon keeps its session directory (and its
# shared-memory topology file); daemons of two "nodes" sharing one /tmp race to create the same
# names. Give each node name its own.
export TMPDIR="${TMPDIR:-/tmp}/local-rsh-$(id -u)-$host"
mkdir -p "$TMPDIR"
exec bash -c "$*"
