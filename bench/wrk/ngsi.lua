-- wrk script for NGSI-LD workloads; configured by environment variables set by bench/run.py:
--   MODE      get | retrieve | patch | create | upsert
--   GET_PATH  path for MODE=get
--   PREFIX    entity id prefix; ids are PREFIX..N for preloaded entities
--   N         number of preloaded entities (retrieve, patch)
--   ATTR      attribute for MODE=patch; BODY its fragment ({{n}} is replaced by a counter)
--   BOX       min_lon,min_lat,max_lon,max_lat for MODE=near (random centres); MAX_DISTANCE metres
--   TEMPLATE  entity template ({{id}} is replaced) for create and upsert; BATCH entities per upsert
local mode = os.getenv("MODE")
local prefix = os.getenv("PREFIX") or "urn:ngsi-ld:BeeHive:"
local n = tonumber(os.getenv("N") or "1")
local batch = tonumber(os.getenv("BATCH") or "100")
local template = os.getenv("TEMPLATE") or ""
local attr = os.getenv("ATTR") or "incoming"
local body = os.getenv("BODY") or "{}"
local box = {}
for v in string.gmatch(os.getenv("BOX") or "0,0,0,0", "[^,]+") do table.insert(box, tonumber(v)) end
local max_distance = os.getenv("MAX_DISTANCE") or "1000"
local counter = 0
local threads = {}
thread_id = 0 -- set per thread by setup()

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + thread_id * 7919)
  wrk.headers["Content-Type"] = "application/json"
end

local function fresh_id()
  counter = counter + 1
  return prefix .. "new-" .. os.time() .. "-" .. thread_id .. "-" .. counter
end

-- The template split once around {{id}}, so that building a body is a concatenation.
local before_id, after_id = template:match("^(.-){{id}}(.*)$")

local function with_id(id)
  return before_id .. id .. after_id
end

function request()
  if mode == "get" then
    return wrk.format("GET", os.getenv("GET_PATH"))
  elseif mode == "near" then
    local lon = box[1] + math.random() * (box[3] - box[1])
    local lat = box[2] + math.random() * (box[4] - box[2])
    return wrk.format("GET", string.format(
      "/ngsi-ld/v1/entities?type=BeeHive&georel=near;maxDistance==%s&geometry=Point&coordinates=%%5B%.5f,%.5f%%5D&limit=1000&options=keyValues",
      max_distance, lon, lat))
  elseif mode == "retrieve" then
    return wrk.format("GET", "/ngsi-ld/v1/entities/" .. prefix .. math.random(0, n - 1))
  elseif mode == "patch" then
    counter = counter + 1
    local b = body:gsub("{{n}}", tostring(counter))
    return wrk.format("PATCH", "/ngsi-ld/v1/entities/" .. prefix .. math.random(0, n - 1) .. "/attrs/" .. attr, nil, b)
  elseif mode == "create" then
    return wrk.format("POST", "/ngsi-ld/v1/entities", nil, with_id(fresh_id()))
  elseif mode == "upsert" then
    local items = {}
    for i = 1, batch do
      items[i] = with_id(fresh_id())
    end
    return wrk.format("POST", "/ngsi-ld/v1/entityOperations/upsert", nil, "[" .. table.concat(items, ",") .. "]")
  end
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
