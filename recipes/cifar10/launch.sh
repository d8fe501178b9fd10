#!/usr/bin/env bash
# Multi-GPU / multi-node training with torchrun (DDP), antgo's launch.sh arguments:
#   bash launch.sh {{name}}/main.py <gpus per node> [nodes] [node rank] [master address] [main.py flags...]
# Example, 4 GPUs on one machine:
#   bash launch.sh {{name}}/main.py 4 1 0 127.0.0.1 --exp={{name}} --process=train
# PORT sets the rendezvous port (default 8990).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash launch.sh <main.py> <gpus per node> [nodes] [node rank] [master address] [flags...]" >&2
  exit 2
fi
SCRIPT=$1
GPUS=$2
NNODES=${3:-1}
NODE_RANK=${4:-0}
MASTER_ADDR=${5:-127.0.0.1}
shift $(( $# < 5 ? $# : 5 ))
exec torchrun \
  --nnodes="$NNODES" \
  --node_rank="$NODE_RANK" \
  --master_addr="$MASTER_ADDR" \
  --master_port="${PORT:-8990}" \
  --nproc_per_node="$GPUS" \
  "$SCRIPT" --distributed "$@"
