#!/usr/bin/env bash
# The main job: set up, build, train the default small CartesianMoE on the embedded corpus and
# report validation perplexity. Training arrives with the model issue; until then this script
# sets up, builds and reports the machine, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
build/bin/cmoe info
echo
echo "cmoe: training (cmoe train) is not implemented yet: it arrives with the model issue."
echo "cmoe: this run only set up and built cmoe; no model was trained and no perplexity exists."
