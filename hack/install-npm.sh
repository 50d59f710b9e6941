#!/usr/bin/env bash
# Installs GitHub's published API descriptions (pinned) into a cache outside the repository and
# prints the node_modules directory. A warm cache means no network.
set -euo pipefail
OPENAPI=${OCTOKIT_OPENAPI_VERSION:-23.0.2}
SCHEMAS=${OCTOKIT_WEBHOOKS_SCHEMAS_VERSION:-7.6.1}
EXAMPLES=${OCTOKIT_WEBHOOKS_EXAMPLES_VERSION:-7.6.1}
CACHE=${RUNNERD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnerd}
DIR="$CACHE/npm/openapi$OPENAPI-schemas$SCHEMAS-examples$EXAMPLES"
if [ ! -f "$DIR/.complete" ]; then
  mkdir -p "$DIR"
  echo '{"name":"runnerd-schemas","private":true}' > "$DIR/package.json"
  if ! npm install --prefix "$DIR" --no-package-lock --no-audit --no-fund --silent \
      "@octokit/openapi@$OPENAPI" "@octokit/webhooks-schemas@$SCHEMAS" "@octokit/webhooks-examples@$EXAMPLES" >&2; then
    echo "install-npm: FAILED: npm install of @octokit/openapi@$OPENAPI @octokit/webhooks-schemas@$SCHEMAS @octokit/webhooks-examples@$EXAMPLES" >&2
    echo "install-npm: check that the npm registry is reachable (npm ping), then retry" >&2
    exit 1
  fi
  touch "$DIR/.complete"
fi
echo "$DIR/node_modules"
