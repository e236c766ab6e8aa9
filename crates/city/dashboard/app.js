// Haskap city dashboard: a static page that reads everything through the NGSI-LD API of the
// broker that serves it (same origin), with the Haskap city @context. No framework, no build step,
// no external requests (map tiles only when the operator configures a tile server).
'use strict';

(() => {
  // ---------------------------------------------------------------------------------------------
  // Constants
  // ---------------------------------------------------------------------------------------------

  const DEFAULT_CONTEXT = 'https://w3id.org/haskap/context/city/v1.jsonld';
  const DEFAULT_TENANTS = [
    { id: '', code: '012131', ja: '苫小牧市', en: 'Tomakomai' },
    { id: 'shiraoi', code: '015784', ja: '白老町', en: 'Shiraoi' },
    { id: 'atsuma', code: '015814', ja: '厚真町', en: 'Atsuma' },
    { id: 'abira', code: '015857', ja: '安平町', en: 'Abira' },
    { id: 'mukawa', code: '015865', ja: 'むかわ町', en: 'Mukawa' },
  ];
  // Used only when a tenant has neither an outline nor any site: the city hall of Tomakomai.
  const FALLBACK_CENTER = { lon: 141.60553, lat: 42.63406 };
  const PAGE = 1000; // the broker's largest page
  const NEAR_LIMIT = 10;
  const NEAR_DISTANCES = [5000, 20000, 100000];
  const HAZARDS = ['flood', 'landslide', 'stormSurge', 'earthquake', 'tsunami', 'greatFire', 'inlandFlood', 'eruption'];
  const SECTORS = ['industry', 'commercial', 'household', 'transport', 'waste'];
  const SEVERITY_RANK = { critical: 5, high: 4, medium: 3, low: 2, informational: 1 };
  const NET_ZERO_YEAR = 2050;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const POLL_MS = 15000; // alerts polling when the live stream is refused
  const STREAM_RETRY_MS = 60000;

  // ---------------------------------------------------------------------------------------------
  // UI strings (Japanese first). Entity names and other data values are never translated.
  // ---------------------------------------------------------------------------------------------

  const I18N = {
    ja: {
      'doc.title': '苫小牧市 都市データダッシュボード | Haskap',
      skip: '本文へスキップ',
      'title.city': '苫小牧市',
      'title.main': '都市データダッシュボード',
      subtitle: '防災・ゼロカーボン・まちづくりの指標を都市データ基盤からリアルタイムに表示',
      'tenant.label': '表示する自治体',
      'lang.switch': 'English',
      'sample.title': 'サンプルデータ',
      'sample.body': '表示中の数値はデモ用に生成したサンプルデータであり、市の公式な統計値ではありません。',
      'map.heading': '避難場所・施設マップ',
      'map.layers': '表示レイヤー',
      'map.hazard': '災害種別で絞り込み',
      'map.hazardAll': 'すべての災害種別',
      'map.zoomIn': '拡大',
      'map.zoomOut': '縮小',
      'map.fit': '全体を表示',
      'map.legend': '凡例',
      'map.roledesc': '地図',
      'map.tip': '地図をクリックすると、その地点から近い避難場所を表示します',
      'map.help': '地図にフォーカスがあるとき、矢印キーで移動、＋と−で拡大縮小、Enter キーで地図の中心から近い避難場所を検索します。地図の代わりに「避難場所から選ぶ」の一覧も使えます。',
      'map.loading': '地図データを読み込んでいます…',
      'map.count': '避難場所 {sites} 件・AED {aeds} 件・子育て施設 {childcare} 件',
      'map.filtered': '（{hazard}に対応する避難場所 {n} 件）',
      'map.partial': '一部のデータを取得できませんでした：{what}',
      'map.error': '地図データを取得できませんでした（{err}）',
      'layer.site': '避難場所',
      'layer.shelter': '避難所',
      'layer.aed': 'AED',
      'layer.childcare': '子育て施設',
      'legend.site': '指定緊急避難場所',
      'legend.shelterOpen': '指定避難所（開設中）',
      'legend.shelter': '指定避難所',
      'legend.aed': 'AED',
      'legend.childcare': '子育て施設',
      'legend.point': '選択した地点',
      'nearest.heading': '近くの避難場所',
      'nearest.choose': '避難場所から選ぶ',
      'nearest.choosePrompt': '— 避難場所を選択 —',
      'nearest.locate': '現在地',
      'nearest.hint': '地図をクリックするか、一覧から避難場所を選ぶと、その地点から近い順に避難場所を表示します。',
      'nearest.searching': '近くの避難場所を検索しています…',
      'nearest.result': '{where}から近い順に {n} 件（{radius} 以内）',
      'nearest.resultFiltered': '{where}から近い順に {n} 件（{radius} 以内、{hazard}に対応）',
      'nearest.none': '{radius} 以内に避難場所が見つかりませんでした。',
      'nearest.error': '近くの避難場所を検索できませんでした（{err}）',
      'nearest.fromClick': '選択した地点（{lat}, {lon}）',
      'nearest.fromGps': '現在地（{lat}, {lon}）',
      'nearest.fromSite': '「{name}」',
      'nearest.fromCenter': '地図の中心（{lat}, {lon}）',
      'nearest.locating': '現在地を取得しています…',
      'nearest.gpsError': '現在地を取得できませんでした（{err}）。地図をクリックして地点を選んでください。',
      'nearest.gpsUnsupported': 'このブラウザーでは現在地を取得できません。',
      'nearest.capacity': '収容 {n} 人',
      'nearest.shelterTag': '避難所',
      'details.close': '閉じる',
      'details.searchHere': 'この場所から近い避難場所',
      'details.address': '所在地',
      'details.capacity': '想定収容人数',
      'details.capacityChild': '定員',
      'details.people': '{n} 人',
      'details.hazards': '対応する災害',
      'details.noHazards': '登録なし',
      'details.elevation': '標高',
      'details.telephone': '電話番号',
      'details.status': '開設状況',
      'details.open': '開設中',
      'details.closed': '未開設',
      'details.evacuees': '避難者数',
      'details.openedAt': '開設日時',
      'details.position': '設置位置',
      'details.hours': '利用可能時間',
      'details.days': '利用可能曜日',
      'details.pediatric': '小児対応',
      'details.facilityType': '種別',
      'details.ages': '受入年齢',
      'details.temporaryCare': '一時預かり',
      'details.yes': 'あり',
      'details.no': 'なし',
      'details.operator': '設置者',
      'details.district': '地区',
      'type.EvacuationSite': '指定緊急避難場所',
      'type.EvacuationShelter': '指定避難所',
      'type.AED': 'AED',
      'type.ChildcareFacility': '子育て施設',
      'district.west': '西部',
      'district.central': '中心部',
      'district.east': '東部',
      'district.other': 'その他',
      'hazard.flood': '洪水',
      'hazard.landslide': '崖崩れ・土石流・地滑り',
      'hazard.stormSurge': '高潮',
      'hazard.earthquake': '地震',
      'hazard.tsunami': '津波',
      'hazard.greatFire': '大規模な火事',
      'hazard.inlandFlood': '内水氾濫',
      'hazard.eruption': '火山現象',
      'alerts.heading': '警報・注意報',
      'alerts.loading': '読み込んでいます…',
      'alerts.none': '現在、発表中の警報・注意報はありません。',
      'alerts.error': '警報を取得できませんでした（{err}）',
      'alerts.issued': '発表',
      'alerts.validTo': '有効期限',
      'alerts.expired': '期限切れ',
      'alerts.updated': '更新',
      'alerts.source': '発表元',
      'alerts.strip': '発表中：',
      'alerts.stripMore': 'ほか {n} 件',
      'alerts.stripLink': '警報の一覧へ',
      'live.connecting': '接続中',
      'live.open': 'ライブ更新中',
      'live.reconnecting': '再接続中',
      'live.unsupported': '自動更新なし',
      'live.polling': '定期更新（15 秒ごと）',
      'severity.critical': '緊急',
      'severity.high': '警戒',
      'severity.medium': '注意',
      'severity.low': '低',
      'severity.informational': '情報',
      'category.tsunami': '津波',
      'category.earthquake': '地震',
      'category.volcano': '火山',
      'category.weather': '気象',
      'category.flood': '洪水',
      'category.other': 'その他',
      'kpi.heading': 'まちづくりの 5 つの目標と指標（KPI）',
      'kpi.goal': '目標 {n}',
      'kpi.latest': '{year}の実績',
      'kpi.target': '目標値',
      'kpi.achieved': '目標達成',
      'kpi.notAchieved': '目標まで {gap}',
      'kpi.increase': '増加をめざす',
      'kpi.decrease': '減少をめざす',
      'kpi.trend': '{indicator}の推移：{values}',
      'kpi.none': 'この自治体の KPI データはありません。',
      'kpi.error': 'KPI を取得できませんでした（{err}）',
      'co2.heading': 'ゼロカーボン：部門別 CO₂ 排出量と削減目標',
      'co2.unit': '千t-CO₂',
      'co2.summary': '{year}の排出量は {total} 千t-CO₂（{baseYear}比 {change}）。{netZero}年度の実質ゼロに向けた目標経路を点線で示します。',
      'co2.summaryNoBase': '{year}の排出量は {total} 千t-CO₂。{netZero}年度の実質ゼロに向けた目標経路を点線で示します。',
      'co2.target': '目標経路（{netZero}年度 実質ゼロ）',
      'co2.table': '数値を表で見る',
      'co2.year': '年度',
      'co2.total': '合計',
      'co2.targetCol': '目標',
      'co2.sample': '※ サンプルデータ：デモ用に生成した数値であり、市の公式な排出量ではありません。',
      'co2.none': 'この自治体の排出量データはありません。',
      'co2.error': '排出量データを取得できませんでした（{err}）',
      'co2.chartLabel': '部門別 CO₂ 排出量の積み上げ棒グラフと削減目標の折れ線（{from}〜{to}）',
      'sector.industry': '産業',
      'sector.commercial': '業務その他',
      'sector.household': '家庭',
      'sector.transport': '運輸',
      'sector.waste': '廃棄物',
      'notices.heading': '町内会のお知らせ',
      'notices.none': 'お知らせはありません。',
      'notices.error': 'お知らせを取得できませんでした（{err}）',
      'notice.disaster': '防災',
      'notice.waste': 'ごみ',
      'notice.snow': '除雪',
      'footer.data': 'データ：NGSI-LD API',
      'footer.context': '語彙',
      'footer.powered': '都市データ基盤',
      'footer.tenant': '表示中：{name}（地方公共団体コード {code}）',
      'area.chip': '表示中：{name}',
      fy: '{y}年度',
      km: '{n} km',
      m: '{n} m',
      'err.network': '通信エラー',
      'err.http': 'HTTP {status}',
    },
    en: {
      'doc.title': 'Tomakomai City Data Dashboard | Haskap',
      skip: 'Skip to main content',
      'title.city': 'Tomakomai',
      'title.main': 'City Data Dashboard',
      subtitle: 'Disaster preparedness, zero carbon and policy indicators, live from the city data platform',
      'tenant.label': 'Municipality',
      'lang.switch': '日本語',
      'sample.title': 'Sample data',
      'sample.body': 'The figures shown are sample data generated for this demo, not official city statistics.',
      'map.heading': 'Evacuation sites and facilities',
      'map.layers': 'Layers',
      'map.hazard': 'Filter by hazard',
      'map.hazardAll': 'All hazards',
      'map.zoomIn': 'Zoom in',
      'map.zoomOut': 'Zoom out',
      'map.fit': 'Show the whole area',
      'map.legend': 'Legend',
      'map.roledesc': 'map',
      'map.tip': 'Click the map to list the evacuation sites nearest to that point',
      'map.help': 'When the map has focus, use the arrow keys to pan, + and − to zoom, and Enter to list the evacuation sites nearest to the centre of the map. You can also use the “Choose an evacuation site” list instead of the map.',
      'map.loading': 'Loading map data…',
      'map.count': '{sites} evacuation sites · {aeds} AEDs · {childcare} childcare facilities',
      'map.filtered': ' ({n} sites for {hazard})',
      'map.partial': 'Some data could not be loaded: {what}',
      'map.error': 'Could not load the map data ({err})',
      'layer.site': 'Evacuation sites',
      'layer.shelter': 'Shelters',
      'layer.aed': 'AEDs',
      'layer.childcare': 'Childcare',
      'legend.site': 'Designated evacuation site',
      'legend.shelterOpen': 'Designated shelter (open)',
      'legend.shelter': 'Designated shelter',
      'legend.aed': 'AED',
      'legend.childcare': 'Childcare facility',
      'legend.point': 'Chosen point',
      'nearest.heading': 'Nearest evacuation sites',
      'nearest.choose': 'Choose an evacuation site',
      'nearest.choosePrompt': '— Choose a site —',
      'nearest.locate': 'My location',
      'nearest.hint': 'Click the map or choose a site from the list to see the evacuation sites nearest to that point.',
      'nearest.searching': 'Searching for the nearest evacuation sites…',
      'nearest.result': '{n} sites nearest to {where} (within {radius})',
      'nearest.resultFiltered': '{n} sites nearest to {where} (within {radius}, for {hazard})',
      'nearest.none': 'No evacuation site within {radius}.',
      'nearest.error': 'Could not search for the nearest sites ({err})',
      'nearest.fromClick': 'the chosen point ({lat}, {lon})',
      'nearest.fromGps': 'your location ({lat}, {lon})',
      'nearest.fromSite': '“{name}”',
      'nearest.fromCenter': 'the map centre ({lat}, {lon})',
      'nearest.locating': 'Finding your location…',
      'nearest.gpsError': 'Could not get your location ({err}). Click the map to choose a point.',
      'nearest.gpsUnsupported': 'This browser cannot tell your location.',
      'nearest.capacity': 'Capacity {n}',
      'nearest.shelterTag': 'Shelter',
      'details.close': 'Close',
      'details.searchHere': 'Nearest sites from here',
      'details.address': 'Address',
      'details.capacity': 'Capacity',
      'details.capacityChild': 'Capacity',
      'details.people': '{n} people',
      'details.hazards': 'Hazards covered',
      'details.noHazards': 'None registered',
      'details.elevation': 'Elevation',
      'details.telephone': 'Telephone',
      'details.status': 'Status',
      'details.open': 'Open',
      'details.closed': 'Not open',
      'details.evacuees': 'Evacuees',
      'details.openedAt': 'Opened',
      'details.position': 'Location in building',
      'details.hours': 'Hours',
      'details.days': 'Days',
      'details.pediatric': 'Paediatric pads',
      'details.facilityType': 'Type',
      'details.ages': 'Ages',
      'details.temporaryCare': 'Temporary care',
      'details.yes': 'Yes',
      'details.no': 'No',
      'details.operator': 'Operator',
      'details.district': 'District',
      'type.EvacuationSite': 'Designated evacuation site',
      'type.EvacuationShelter': 'Designated shelter',
      'type.AED': 'AED',
      'type.ChildcareFacility': 'Childcare facility',
      'district.west': 'West',
      'district.central': 'Central',
      'district.east': 'East',
      'district.other': 'Other',
      'hazard.flood': 'Flood',
      'hazard.landslide': 'Landslide / debris flow',
      'hazard.stormSurge': 'Storm surge',
      'hazard.earthquake': 'Earthquake',
      'hazard.tsunami': 'Tsunami',
      'hazard.greatFire': 'Large-scale fire',
      'hazard.inlandFlood': 'Inland flooding',
      'hazard.eruption': 'Volcanic eruption',
      'alerts.heading': 'Alerts and warnings',
      'alerts.loading': 'Loading…',
      'alerts.none': 'No alerts or warnings are in force.',
      'alerts.error': 'Could not load the alerts ({err})',
      'alerts.issued': 'Issued',
      'alerts.validTo': 'Valid until',
      'alerts.expired': 'Expired',
      'alerts.updated': 'Updated',
      'alerts.source': 'Source',
      'alerts.strip': 'In force:',
      'alerts.stripMore': 'and {n} more',
      'alerts.stripLink': 'See all alerts',
      'live.connecting': 'Connecting',
      'live.open': 'Live',
      'live.reconnecting': 'Reconnecting',
      'live.unsupported': 'No live updates',
      'live.polling': 'Refreshed every 15 s',
      'severity.critical': 'Critical',
      'severity.high': 'High',
      'severity.medium': 'Medium',
      'severity.low': 'Low',
      'severity.informational': 'Info',
      'category.tsunami': 'Tsunami',
      'category.earthquake': 'Earthquake',
      'category.volcano': 'Volcano',
      'category.weather': 'Weather',
      'category.flood': 'Flood',
      'category.other': 'Other',
      'kpi.heading': 'Five policy goals and their KPIs',
      'kpi.goal': 'Goal {n}',
      'kpi.latest': 'Actual, {year}',
      'kpi.target': 'Target',
      'kpi.achieved': 'Target met',
      'kpi.notAchieved': '{gap} to target',
      'kpi.increase': 'Aim: increase',
      'kpi.decrease': 'Aim: decrease',
      'kpi.trend': 'Trend of {indicator}: {values}',
      'kpi.none': 'No KPI data for this municipality.',
      'kpi.error': 'Could not load the KPIs ({err})',
      'co2.heading': 'Zero carbon: CO₂ emissions by sector and the reduction path',
      'co2.unit': 'kt-CO₂',
      'co2.summary': 'Emissions in {year}: {total} kt-CO₂ ({change} against {baseYear}). The dotted line is the target path to net zero in FY{netZero}.',
      'co2.summaryNoBase': 'Emissions in {year}: {total} kt-CO₂. The dotted line is the target path to net zero in FY{netZero}.',
      'co2.target': 'Target path (net zero by FY{netZero})',
      'co2.table': 'Show the figures as a table',
      'co2.year': 'Fiscal year',
      'co2.total': 'Total',
      'co2.targetCol': 'Target',
      'co2.sample': '* Sample data: figures generated for this demo, not the city’s official emissions.',
      'co2.none': 'No emission data for this municipality.',
      'co2.error': 'Could not load the emission data ({err})',
      'co2.chartLabel': 'Stacked bar chart of CO₂ emissions by sector with the reduction target line ({from} to {to})',
      'sector.industry': 'Industry',
      'sector.commercial': 'Commercial & other',
      'sector.household': 'Household',
      'sector.transport': 'Transport',
      'sector.waste': 'Waste',
      'notices.heading': 'Neighbourhood association notices',
      'notices.none': 'No notices.',
      'notices.error': 'Could not load the notices ({err})',
      'notice.disaster': 'Disaster prep',
      'notice.waste': 'Waste',
      'notice.snow': 'Snow',
      'footer.data': 'Data: NGSI-LD API',
      'footer.context': 'Vocabulary',
      'footer.powered': 'City data platform',
      'footer.tenant': 'Showing: {name} (local government code {code})',
      'area.chip': 'Showing: {name}',
      fy: 'FY{y}',
      km: '{n} km',
      m: '{n} m',
      'err.network': 'network error',
      'err.http': 'HTTP {status}',
    },
  };

  // ---------------------------------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------------------------------

  const state = {
    lang: 'ja',
    contextUrl: DEFAULT_CONTEXT,
    tileUrl: null,
    tileAttribution: '',
    tenants: DEFAULT_TENANTS,
    tenant: '',
    generation: 0, // bumped on every tenant switch; late answers of an older one are dropped
    map: { areas: [], sites: [], shelters: [], aeds: [], childcare: [], status: 'loading', failed: [], error: null },
    alerts: new Map(), // id -> entity
    liveAt: new Map(), // id -> time the stream last delivered it (these sort first)
    alertsStatus: 'loading',
    alertsError: null,
    emissions: null, // {records, targets} | {error}
    kpis: null, // [entity] | {error}
    notices: null, // [entity] | {error}
    sample: false,
    layers: { site: true, shelter: true, aed: true, childcare: true },
    hazard: '',
    view: null, // {zoom, cx, cy} in Web Mercator units (0..1)
    point: null, // {lon, lat, source, name}
    nearest: null, // {status, items, radius, error}
    nearToken: 0,
    selectedId: null,
    stream: null,
    streamState: 'connecting',
    streamHadError: false,
  };

  // ---------------------------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function t(key, vars) {
    let s = (I18N[state.lang] && I18N[state.lang][key]) ?? I18N.ja[key] ?? key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] !== undefined ? String(vars[k]) : m));
    return s;
  }

  /** Creates an HTML element: el('li', {class: 'x', dataset: {id}}, child, 'text', …). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  /** Creates an SVG element. */
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(node, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  /** The plain value of a key-values attribute ({@value}, {value} and Relationship objects unwrapped). */
  function val(x) {
    if (x && typeof x === 'object' && !Array.isArray(x)) {
      if ('@value' in x) return x['@value'];
      if ('value' in x && ('type' in x || Object.keys(x).length === 1)) return val(x.value);
      if ('object' in x && x.type === 'Relationship') return x.object;
    }
    return x;
  }

  function num(x) {
    const v = val(x);
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    return Number.isFinite(n) ? n : null;
  }

  function str(x) {
    const v = val(x);
    if (v === undefined || v === null) return '';
    if (typeof v === 'object') return '';
    return String(v);
  }

  function bool(x) {
    const v = val(x);
    return v === true || v === 'true';
  }

  function arr(x) {
    const v = val(x);
    if (Array.isArray(v)) return v.map(val);
    if (v === undefined || v === null || v === '') return [];
    return [v];
  }

  /** The entity type without any prefix: "EvacuationSite" also from an expanded IRI. */
  function shortType(e) {
    const ty = Array.isArray(e.type) ? e.type[0] : e.type;
    return String(ty || '').replace(/^.*[/#:]/, '');
  }

  function time(x) {
    const v = str(x);
    if (!v) return null;
    const ms = Date.parse(v);
    return Number.isFinite(ms) ? ms : null;
  }

  function fmtNumber(n, digits) {
    if (n === null || n === undefined) return '–';
    const opts = digits === undefined ? { maximumFractionDigits: 1 } : { minimumFractionDigits: digits, maximumFractionDigits: digits };
    return new Intl.NumberFormat(state.lang === 'ja' ? 'ja-JP' : 'en-GB', opts).format(n);
  }

  function fmtDateTime(ms) {
    if (ms === null) return '–';
    return new Intl.DateTimeFormat(state.lang === 'ja' ? 'ja-JP' : 'en-GB', {
      dateStyle: 'medium',
      timeStyle: 'short',
      timeZone: 'Asia/Tokyo',
    }).format(new Date(ms));
  }

  function fmtDate(ms) {
    if (ms === null) return '–';
    return new Intl.DateTimeFormat(state.lang === 'ja' ? 'ja-JP' : 'en-GB', { dateStyle: 'medium', timeZone: 'Asia/Tokyo' }).format(new Date(ms));
  }

  function fmtDistance(m) {
    if (m < 1000) return t('m', { n: fmtNumber(Math.round(m / 10) * 10, 0) });
    return t('km', { n: fmtNumber(m / 1000, m < 10000 ? 2 : 1) });
  }

  function fy(y) {
    return t('fy', { y });
  }

  function errText(e) {
    if (e && e.status) return t('err.http', { status: e.status });
    return t('err.network');
  }

  /** Great-circle distance in metres. */
  function haversine(lon1, lat1, lon2, lat2) {
    const R = 6371008.8;
    const rad = Math.PI / 180;
    const dLat = (lat2 - lat1) * rad;
    const dLon = (lon2 - lon1) * rad;
    const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
    return 2 * R * Math.asin(Math.min(1, Math.sqrt(a)));
  }

  /** [lon, lat] of an entity's location (a Point, or the first vertex of anything else). */
  function pointOf(e) {
    const g = e && val(e.location);
    if (!g || !g.coordinates) return null;
    let c = g.coordinates;
    while (Array.isArray(c) && Array.isArray(c[0])) c = c[0];
    if (!Array.isArray(c) || !Number.isFinite(c[0]) || !Number.isFinite(c[1])) return null;
    return [c[0], c[1]];
  }

  function tenantInfo(id) {
    return state.tenants.find((x) => x.id === id) || { id, code: '', ja: id, en: id };
  }

  function tenantName(id) {
    const x = tenantInfo(id);
    return state.lang === 'ja' ? x.ja : x.en;
  }

  // ---------------------------------------------------------------------------------------------
  // The NGSI-LD API
  // ---------------------------------------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, body) {
      super(`HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  function linkHeader() {
    return `<${state.contextUrl}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`;
  }

  function query(params) {
    return Object.entries(params)
      .filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
      .join('&');
  }

  async function getJson(path, params, tenant) {
    const headers = { Accept: 'application/json', Link: linkHeader() };
    if (tenant) headers['NGSILD-Tenant'] = tenant;
    const url = params ? `${path}?${query(params)}` : path;
    const res = await fetch(url, { headers, cache: 'no-store' });
    if (!res.ok) {
      let body = '';
      try {
        body = await res.text();
      } catch (_) {
        /* ignore */
      }
      throw new HttpError(res.status, body);
    }
    return res.json();
  }

  /** All entities of a type (key-values), following offset paging when a page is full. */
  async function entities(type, tenant, extra) {
    const out = [];
    for (let offset = 0; offset < 200 * PAGE; offset += PAGE) {
      const page = await getJson('/ngsi-ld/v1/entities', { type, options: 'keyValues', limit: PAGE, offset: offset || undefined, ...extra }, tenant);
      if (!Array.isArray(page)) break;
      out.push(...page);
      if (page.length < PAGE) break;
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Start-up
  // ---------------------------------------------------------------------------------------------

  async function start() {
    const params = new URLSearchParams(location.search);
    if (params.get('lang') === 'en') state.lang = 'en';
    try {
      const res = await fetch('/dashboard/config.json', { headers: { Accept: 'application/json' }, cache: 'no-store' });
      if (res.ok) {
        const c = await res.json();
        if (c.contextUrl) state.contextUrl = c.contextUrl;
        if (Array.isArray(c.tenants) && c.tenants.length) state.tenants = c.tenants;
        state.tileUrl = c.tileUrl || null;
        state.tileAttribution = c.tileAttribution || '';
      }
    } catch (_) {
      // Keep the built-in defaults: the dashboard still works against the same broker.
    }
    const wanted = params.get('tenant') || '';
    state.tenant = state.tenants.some((x) => x.id === wanted) ? wanted : state.tenants[0].id;

    setupStatic();
    applyLanguage();
    setupMap();
    loadTenant();
  }

  function setupStatic() {
    const tenantSelect = $('tenant-select');
    tenantSelect.addEventListener('change', () => switchTenant(tenantSelect.value));
    $('lang-toggle').addEventListener('click', () => {
      state.lang = state.lang === 'ja' ? 'en' : 'ja';
      updateUrl();
      applyLanguage();
      renderAll();
    });
    for (const input of document.querySelectorAll('input[data-layer]')) {
      input.addEventListener('change', () => {
        state.layers[input.dataset.layer] = input.checked;
        renderMap();
      });
    }
    const hazardSelect = $('hazard-select');
    hazardSelect.addEventListener('change', () => {
      state.hazard = hazardSelect.value;
      renderMap();
      renderMapStatus();
      renderSiteSelect();
      if (state.point) findNearest(state.point);
    });
    $('site-select').addEventListener('change', (ev) => {
      const id = ev.target.value;
      const site = state.map.sites.find((s) => s.id === id);
      if (!site) return;
      const p = pointOf(site);
      selectEntity(site, { center: true });
      if (p) findNearest({ lon: p[0], lat: p[1], source: 'site', name: str(site.name) });
    });
    $('locate-btn').addEventListener('click', locate);
    window.addEventListener('resize', () => {
      scheduleMapRender();
      scheduleChartRender();
    });
    if (typeof ResizeObserver === 'function') {
      new ResizeObserver(() => scheduleMapRender()).observe($('map'));
      new ResizeObserver(() => scheduleChartRender()).observe($('co2-chart'));
    }
  }

  function updateUrl() {
    const params = new URLSearchParams(location.search);
    if (state.tenant) params.set('tenant', state.tenant);
    else params.delete('tenant');
    if (state.lang === 'en') params.set('lang', 'en');
    else params.delete('lang');
    const q = params.toString();
    history.replaceState(null, '', location.pathname + (q ? `?${q}` : '') + location.hash);
  }

  function switchTenant(id) {
    if (id === state.tenant) return;
    state.tenant = id;
    updateUrl();
    loadTenant();
  }

  /** (Re)loads every panel for the current tenant; panels fail independently. */
  function loadTenant() {
    const gen = ++state.generation;
    const tenant = state.tenant;
    state.map = { areas: [], sites: [], shelters: [], aeds: [], childcare: [], status: 'loading', failed: [], error: null };
    state.alerts = new Map();
    state.liveAt = new Map();
    state.alertsStatus = 'loading';
    state.emissions = null;
    state.kpis = null;
    state.notices = null;
    state.sample = false;
    state.view = null;
    state.point = null;
    state.nearest = null;
    state.nearToken++;
    state.selectedId = null;
    renderAll();
    connectStream();

    const current = () => gen === state.generation;

    loadMapData(tenant).then((m) => {
      if (!current()) return;
      state.map = m;
      fitView();
      renderAll();
    });

    loadAlerts(tenant, current);

    Promise.all([entities('EmissionRecord', tenant), entities('EmissionTarget', tenant)])
      .then(([records, targets]) => ({ records, targets }))
      .catch((error) => ({ error }))
      .then((r) => {
        if (!current()) return;
        state.emissions = r;
        renderEmissions();
        renderSampleBanner();
      });

    entities('KeyPerformanceIndicator', tenant)
      .catch((error) => ({ error }))
      .then((r) => {
        if (!current()) return;
        state.kpis = r;
        renderKpis();
        renderSampleBanner();
      });

    entities('NeighbourhoodNotice', tenant)
      .catch((error) => ({ error }))
      .then((r) => {
        if (!current()) return;
        state.notices = r;
        renderNotices();
        renderSampleBanner();
      });
  }

  async function loadMapData(tenant) {
    const parts = {
      areas: 'AdministrativeArea',
      sites: 'EvacuationSite',
      shelters: 'EvacuationShelter',
      aeds: 'AED',
      childcare: 'ChildcareFacility',
    };
    const keys = Object.keys(parts);
    const results = await Promise.allSettled(keys.map((k) => entities(parts[k], tenant)));
    const m = { areas: [], sites: [], shelters: [], aeds: [], childcare: [], status: 'ready', failed: [], error: null };
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') m[keys[i]] = r.value;
      else {
        m.failed.push(parts[keys[i]]);
        m.error = r.reason;
      }
    });
    if (m.failed.length === keys.length) m.status = 'error';
    m.sites.sort((a, b) => (str(a.nameKana) || str(a.name)).localeCompare(str(b.nameKana) || str(b.name), 'ja'));
    return m;
  }

  async function loadAlerts(tenant, current) {
    const started = Date.now();
    try {
      const list = await entities('Alert', tenant);
      if (!current()) return;
      // What the stream delivered while the query was under way is newer: keep it.
      const fresh = new Map();
      for (const a of list) fresh.set(a.id, a);
      for (const [id, a] of state.alerts) if ((state.liveAt.get(id) || 0) >= started) fresh.set(id, a);
      state.alerts = fresh;
      state.alertsStatus = 'ready';
    } catch (error) {
      if (!current()) return;
      state.alertsStatus = 'error';
      state.alertsError = error;
    }
    renderAlerts();
    renderSampleBanner();
  }

  // ---------------------------------------------------------------------------------------------
  // Live updates (Server-Sent Events)
  // ---------------------------------------------------------------------------------------------

  let pollTimer = 0;
  function startPolling(gen) {
    if (pollTimer) return;
    pollTimer = setInterval(() => {
      if (gen !== state.generation) return stopPolling();
      loadAlerts(state.tenant, () => gen === state.generation);
    }, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = 0;
  }

  function connectStream() {
    stopPolling();
    if (state.stream) {
      state.stream.close();
      state.stream = null;
    }
    if (typeof EventSource !== 'function') {
      setStreamState('unsupported');
      return;
    }
    const params = { type: 'Alert', options: 'keyValues', context: state.contextUrl, tenant: state.tenant || undefined };
    const es = new EventSource(`/haskap/v1/stream?${query(params)}`);
    const gen = state.generation;
    state.stream = es;
    state.streamHadError = false;
    setStreamState('connecting');
    es.addEventListener('open', () => {
      if (state.stream !== es) return;
      stopPolling();
      setStreamState('open');
      if (state.streamHadError) {
        // Changes may have been missed while disconnected: resynchronise.
        state.streamHadError = false;
        loadAlerts(state.tenant, () => gen === state.generation);
      }
    });
    es.addEventListener('error', () => {
      if (state.stream !== es) return;
      state.streamHadError = true;
      if (es.readyState !== EventSource.CLOSED) {
        setStreamState('reconnecting'); // the browser retries by itself
        return;
      }
      // The server refused the stream (an HTTP error): fall back to polling the alerts, and try
      // the stream again from time to time.
      setStreamState('polling');
      startPolling(gen);
      setTimeout(() => {
        if (state.stream === es && gen === state.generation) connectStream();
      }, STREAM_RETRY_MS);
    });
    es.addEventListener('notification', (ev) => {
      if (state.stream !== es) return;
      let body;
      try {
        body = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      const items = Array.isArray(body.data) ? body.data : [];
      let changed = false;
      for (const item of items) {
        if (!item || !item.id || shortType(item) !== 'Alert') continue;
        if (item.deletedAt) {
          changed = state.alerts.delete(item.id) || changed;
          state.liveAt.delete(item.id);
        } else {
          state.alerts.set(item.id, item);
          state.liveAt.set(item.id, Date.now());
          changed = true;
        }
      }
      if (changed) {
        if (state.alertsStatus !== 'error') state.alertsStatus = 'ready';
        renderAlerts();
      }
    });
  }

  function setStreamState(s) {
    state.streamState = s;
    const panel = $('alerts-panel');
    panel.dataset.live = s;
    const ind = $('live-indicator');
    ind.dataset.state = s;
    $('live-text').textContent = t(`live.${s}`);
  }

  // ---------------------------------------------------------------------------------------------
  // Rendering: language, banners
  // ---------------------------------------------------------------------------------------------

  function applyLanguage() {
    document.documentElement.lang = state.lang;
    document.title = t('doc.title');
    for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll('[data-i18n-attr]')) {
      for (const pair of node.dataset.i18nAttr.split(';')) {
        const [attr, key] = pair.split(':');
        node.setAttribute(attr, t(key));
      }
    }
    $('map').setAttribute('aria-roledescription', t('map.roledesc'));
    const toggle = $('lang-toggle');
    toggle.textContent = t('lang.switch');
    toggle.lang = state.lang === 'ja' ? 'en' : 'ja';
    setStreamState(state.streamState);
  }

  function renderAll() {
    renderTenantSelect();
    renderHazardSelect();
    renderMap();
    renderMapStatus();
    renderSiteSelect();
    renderNearest();
    renderDetails();
    renderAlerts();
    renderEmissions();
    renderKpis();
    renderNotices();
    renderSampleBanner();
    renderFooter();
  }

  function renderTenantSelect() {
    const s = $('tenant-select');
    s.replaceChildren(...state.tenants.map((x) => el('option', { value: x.id, text: state.lang === 'ja' ? x.ja : x.en })));
    s.value = state.tenant;
  }

  function renderHazardSelect() {
    const s = $('hazard-select');
    s.replaceChildren(el('option', { value: '', text: t('map.hazardAll') }), ...HAZARDS.map((h) => el('option', { value: h, text: t(`hazard.${h}`) })));
    s.value = state.hazard;
  }

  function renderFooter() {
    const x = tenantInfo(state.tenant);
    $('footer-tenant').textContent = t('footer.tenant', { name: tenantName(state.tenant), code: x.code || '–' });
    $('footer-context').textContent = state.contextUrl;
    // The heading names the municipality shown when it is not the default one (Tomakomai).
    const chip = $('area-chip');
    const other = state.tenant !== state.tenants[0].id;
    chip.hidden = !other;
    chip.textContent = other ? t('area.chip', { name: tenantName(state.tenant) }) : '';
  }

  function renderSampleBanner() {
    const all = [
      ...state.map.sites,
      ...state.map.areas,
      ...state.alerts.values(),
      ...(state.emissions && state.emissions.records ? state.emissions.records : []),
      ...(Array.isArray(state.kpis) ? state.kpis : []),
      ...(Array.isArray(state.notices) ? state.notices : []),
    ];
    state.sample = all.some((e) => bool(e.sampleData));
    $('sample-banner').hidden = !state.sample;
  }

  function panelStatus(id, text, kind) {
    const node = $(id);
    node.textContent = text || '';
    node.className = `panel-status${kind ? ` is-${kind}` : ''}`;
  }

  // ---------------------------------------------------------------------------------------------
  // The map: Web Mercator, drawn in SVG in screen coordinates
  // ---------------------------------------------------------------------------------------------

  const mercX = (lon) => (lon + 180) / 360;
  const mercY = (lat) => {
    const s = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
    return 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI);
  };
  const lonOf = (x) => x * 360 - 180;
  const latOf = (y) => (Math.atan(Math.sinh(Math.PI * (1 - 2 * y))) * 180) / Math.PI;
  const MIN_ZOOM = 3;
  const MAX_ZOOM = 19;

  function mapSize() {
    const svgEl = $('map-svg');
    return { w: svgEl.clientWidth || 800, h: svgEl.clientHeight || 500 };
  }

  function scale() {
    return 256 * 2 ** state.view.zoom;
  }

  function project(lon, lat) {
    const { w, h } = mapSize();
    const s = scale();
    return [(mercX(lon) - state.view.cx) * s + w / 2, (mercY(lat) - state.view.cy) * s + h / 2];
  }

  function unproject(x, y) {
    const { w, h } = mapSize();
    const s = scale();
    return [lonOf((x - w / 2) / s + state.view.cx), latOf((y - h / 2) / s + state.view.cy)];
  }

  function areaRings(area) {
    const g = val(area.location);
    if (!g) return [];
    if (g.type === 'Polygon') return g.coordinates || [];
    if (g.type === 'MultiPolygon') return (g.coordinates || []).flat();
    return [];
  }

  /** Fits the view to the tenant's outline (or its sites). */
  function fitView() {
    const pts = [];
    for (const a of state.map.areas) for (const ring of areaRings(a)) pts.push(...ring);
    const facilities = [...state.map.sites, ...state.map.shelters];
    for (const e of facilities) {
      const p = pointOf(e);
      if (p) pts.push(p);
    }
    if (!pts.length) pts.push([FALLBACK_CENTER.lon, FALLBACK_CENTER.lat]);
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    for (const [lon, lat] of pts) {
      const x = mercX(lon);
      const y = mercY(lat);
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
    const { w, h } = mapSize();
    const pad = 36;
    const dx = Math.max(x1 - x0, 1e-6);
    const dy = Math.max(y1 - y0, 1e-6);
    const s = Math.min((w - 2 * pad) / dx, (h - 2 * pad) / dy);
    const zoom = Math.max(MIN_ZOOM, Math.min(15, Math.log2(s / 256)));
    state.view = { zoom, cx: (x0 + x1) / 2, cy: (y0 + y1) / 2 };
  }

  let mapFrame = 0;
  function scheduleMapRender() {
    if (mapFrame) return;
    mapFrame = requestAnimationFrame(() => {
      mapFrame = 0;
      renderMap();
    });
  }

  function setupMap() {
    const mapEl = $('map');
    const svgEl = $('map-svg');
    let drag = null;

    svgEl.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0 || !state.view) return;
      drag = { x: ev.clientX, y: ev.clientY, cx: state.view.cx, cy: state.view.cy, moved: false, id: ev.pointerId };
    });
    svgEl.addEventListener('pointermove', (ev) => {
      if (!drag || ev.pointerId !== drag.id) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 5) return;
      if (!drag.moved) {
        drag.moved = true;
        svgEl.setPointerCapture(ev.pointerId);
        mapEl.classList.add('is-dragging');
      }
      const s = scale();
      state.view.cx = drag.cx - dx / s;
      state.view.cy = drag.cy - dy / s;
      scheduleMapRender();
    });
    const end = (ev) => {
      if (!drag || ev.pointerId !== drag.id) return;
      const wasDrag = drag.moved;
      drag = null;
      mapEl.classList.remove('is-dragging');
      if (wasDrag || ev.type === 'pointercancel') return;
      const marker = ev.target.closest && ev.target.closest('.marker');
      if (marker) {
        const e = findEntity(marker.dataset.id);
        if (e) selectEntity(e);
        return;
      }
      const r = svgEl.getBoundingClientRect();
      const [lon, lat] = unproject(ev.clientX - r.left, ev.clientY - r.top);
      findNearest({ lon, lat, source: 'click' });
    };
    svgEl.addEventListener('pointerup', end);
    svgEl.addEventListener('pointercancel', end);

    svgEl.addEventListener(
      'wheel',
      (ev) => {
        if (!state.view) return;
        ev.preventDefault();
        const r = svgEl.getBoundingClientRect();
        zoomAt(ev.deltaY < 0 ? 0.5 : -0.5, ev.clientX - r.left, ev.clientY - r.top);
      },
      { passive: false },
    );

    $('zoom-in').addEventListener('click', () => zoomAt(1));
    $('zoom-out').addEventListener('click', () => zoomAt(-1));
    $('zoom-fit').addEventListener('click', () => {
      fitView();
      renderMap();
    });

    mapEl.addEventListener('keydown', (ev) => {
      if (ev.target !== mapEl || !state.view) return;
      const step = 80 / scale();
      let handled = true;
      switch (ev.key) {
        case 'ArrowLeft':
          state.view.cx -= step;
          break;
        case 'ArrowRight':
          state.view.cx += step;
          break;
        case 'ArrowUp':
          state.view.cy -= step;
          break;
        case 'ArrowDown':
          state.view.cy += step;
          break;
        case '+':
        case '=':
          zoomAt(1);
          break;
        case '-':
        case '_':
          zoomAt(-1);
          break;
        case 'Enter':
        case ' ': {
          findNearest({ lon: lonOf(state.view.cx), lat: latOf(state.view.cy), source: 'center' });
          break;
        }
        default:
          handled = false;
      }
      if (handled) {
        ev.preventDefault();
        scheduleMapRender();
      }
    });
  }

  function zoomAt(delta, sx, sy) {
    if (!state.view) return;
    const { w, h } = mapSize();
    const x = sx ?? w / 2;
    const y = sy ?? h / 2;
    const before = scale();
    const mx = (x - w / 2) / before + state.view.cx;
    const my = (y - h / 2) / before + state.view.cy;
    state.view.zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, state.view.zoom + delta));
    const after = scale();
    state.view.cx = mx - (x - w / 2) / after;
    state.view.cy = my - (y - h / 2) / after;
    scheduleMapRender();
  }

  function findEntity(id) {
    const m = state.map;
    return [...m.sites, ...m.shelters, ...m.aeds, ...m.childcare].find((e) => e.id === id) || null;
  }

  /** The EvacuationShelter entity operating at a site, by the site's id. */
  function shelterBySite() {
    const out = new Map();
    for (const s of state.map.shelters) {
      const site = str(s.site);
      if (site) out.set(site, s);
    }
    return out;
  }

  function siteMatchesHazard(site) {
    return !state.hazard || arr(site.hazardTypes).includes(state.hazard);
  }

  function renderMap() {
    const svgEl = $('map-svg');
    const mapEl = $('map');
    mapEl.dataset.state = state.map.status;
    $('map-tip').hidden = !!(state.point || state.selectedId) || state.map.status !== 'ready';
    const tiles = $('layer-tiles');
    const area = $('layer-area');
    const links = $('layer-links');
    const markers = $('layer-markers');
    const overlay = $('layer-overlay');
    if (!state.view) {
      for (const g of [tiles, area, links, markers, overlay]) g.replaceChildren();
      return;
    }
    const { w, h } = mapSize();
    svgEl.setAttribute('viewBox', `0 0 ${w} ${h}`);

    renderTiles(tiles, w, h);

    // The outline of the municipality.
    area.replaceChildren(
      ...state.map.areas.map((a) => {
        const d = areaRings(a)
          .map((ring) => `M${ring.map(([lon, lat]) => project(lon, lat).map((v) => v.toFixed(1)).join(',')).join('L')}Z`)
          .join('');
        return svg('path', { d, class: 'area', 'fill-rule': 'evenodd', dataset: { id: a.id } });
      }),
    );

    // Markers: childcare, AED below the evacuation sites and shelters.
    const nodes = [];
    const inView = (x, y) => x > -20 && y > -20 && x < w + 20 && y < h + 20;
    if (state.layers.childcare) {
      for (const e of state.map.childcare) {
        const p = pointOf(e);
        if (!p) continue;
        const [x, y] = project(p[0], p[1]);
        if (!inView(x, y)) continue;
        nodes.push(marker(e, x, y, 'childcare', svg('path', { d: 'M0-7.5L7.5 5.5H-7.5z' })));
      }
    }
    if (state.layers.aed) {
      for (const e of state.map.aeds) {
        const p = pointOf(e);
        if (!p) continue;
        const [x, y] = project(p[0], p[1]);
        if (!inView(x, y)) continue;
        nodes.push(marker(e, x, y, 'aed', svg('path', { d: 'M0-7.5L7.5 0 0 7.5-7.5 0z' })));
      }
    }
    const operated = shelterBySite();
    const drawnShelters = new Set();
    for (const e of state.map.sites) {
      if (!siteMatchesHazard(e)) continue;
      const p = pointOf(e);
      if (!p) continue;
      const [x, y] = project(p[0], p[1]);
      if (!inView(x, y)) continue;
      const op = operated.get(e.id);
      const isShelter = bool(e.alsoDesignatedShelter) || !!op;
      if (isShelter && state.layers.shelter) {
        const open = op && str(op.openingStatus) === 'open';
        if (op) drawnShelters.add(op.id);
        nodes.push(
          marker(e, x, y, open ? 'shelter is-open' : 'shelter is-closed', svg('rect', { x: -6.5, y: -6.5, width: 13, height: 13, rx: 1.5 })),
        );
      } else if (state.layers.site) {
        nodes.push(marker(e, x, y, 'site', svg('circle', { r: 6.5 })));
      }
    }
    // Shelters whose site is unknown but which have a location of their own.
    if (state.layers.shelter && !state.hazard) {
      for (const s of state.map.shelters) {
        if (drawnShelters.has(s.id) || state.map.sites.some((x) => x.id === str(s.site))) continue;
        const p = pointOf(s);
        if (!p) continue;
        const [x, y] = project(p[0], p[1]);
        if (!inView(x, y)) continue;
        const open = str(s.openingStatus) === 'open';
        nodes.push(marker(s, x, y, open ? 'shelter is-open' : 'shelter is-closed', svg('rect', { x: -6.5, y: -6.5, width: 13, height: 13, rx: 1.5 })));
      }
    }
    markers.replaceChildren(...nodes);

    // Overlay: lines and ranks of the nearest sites, the chosen point, the selection ring.
    const over = [];
    const linkNodes = [];
    if (state.point) {
      const [px, py] = project(state.point.lon, state.point.lat);
      if (state.nearest && state.nearest.items) {
        state.nearest.items.forEach((item, i) => {
          const p = pointOf(item);
          if (!p) return;
          const [x, y] = project(p[0], p[1]);
          if (i < 3) linkNodes.push(svg('line', { x1: px, y1: py, x2: x, y2: y, class: 'near-link' }));
          over.push(
            svg(
              'g',
              { class: 'rank', transform: `translate(${(x + 10).toFixed(1)},${(y - 10).toFixed(1)})` },
              svg('circle', { r: 8 }),
              svg('text', { 'text-anchor': 'middle', dy: '0.35em', text: String(i + 1) }),
            ),
          );
        });
      }
      over.push(
        svg(
          'g',
          { class: 'pin', transform: `translate(${px.toFixed(1)},${py.toFixed(1)})`, dataset: { testid: 'map-point' } },
          svg('path', { d: 'M0 0C-3-8-9-10-9-15a9 9 0 0 1 18 0c0 5-6 7-9 15z' }),
          svg('circle', { cy: -15, r: 3.4, class: 'pin-dot' }),
        ),
      );
    }
    if (state.selectedId) {
      const e = findEntity(state.selectedId);
      const p = e && pointOf(e);
      if (p) {
        const [x, y] = project(p[0], p[1]);
        over.push(svg('circle', { cx: x, cy: y, r: 12, class: 'selection' }));
      }
    }
    links.replaceChildren(...linkNodes);
    overlay.replaceChildren(...over);

    renderScale(w);
  }

  function marker(e, x, y, kind, shape) {
    const cls = `marker m-${kind}${e.id === state.selectedId ? ' is-selected' : ''}`;
    return svg('g', { class: cls, transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`, dataset: { id: e.id, type: shortType(e) } }, shape, svg('title', { text: str(e.name) }));
  }

  const tileCache = new Map();
  function renderTiles(group, w, h) {
    const attribution = $('map-attribution');
    $('map').classList.toggle('has-tiles', !!state.tileUrl);
    if (!state.tileUrl) {
      group.replaceChildren();
      attribution.hidden = true;
      return;
    }
    attribution.hidden = false;
    attribution.textContent = state.tileAttribution || '';
    // Tiles of the integer zoom nearest to the view, scaled to it.
    const z = Math.max(0, Math.min(19, Math.round(state.view.zoom)));
    const n = 2 ** z;
    const size = (256 * 2 ** state.view.zoom) / n;
    const [lonA, latA] = unproject(0, 0);
    const [lonB, latB] = unproject(w, h);
    const tx0 = Math.max(0, Math.floor(mercX(lonA) * n));
    const tx1 = Math.min(n - 1, Math.floor(mercX(lonB) * n));
    const ty0 = Math.max(0, Math.floor(mercY(latA) * n));
    const ty1 = Math.min(n - 1, Math.floor(mercY(latB) * n));
    const images = [];
    for (let tx = tx0; tx <= tx1; tx++) {
      for (let ty = ty0; ty <= ty1; ty++) {
        const key = `${z}/${tx}/${ty}`;
        let img = tileCache.get(key);
        if (!img) {
          const href = state.tileUrl.replace('{z}', z).replace('{x}', tx).replace('{y}', ty).replace('{s}', 'abc'[(tx + ty) % 3]);
          img = svg('image', { href, preserveAspectRatio: 'none', class: 'tile' });
          if (tileCache.size > 400) tileCache.clear();
          tileCache.set(key, img);
        }
        const [x, y] = project(lonOf(tx / n), latOf(ty / n));
        img.setAttribute('x', x.toFixed(1));
        img.setAttribute('y', y.toFixed(1));
        img.setAttribute('width', (size + 0.5).toFixed(1));
        img.setAttribute('height', (size + 0.5).toFixed(1));
        images.push(img);
      }
    }
    group.replaceChildren(...images);
  }

  function renderScale(w) {
    const lat = latOf(state.view.cy);
    const metresPerPx = (40075016.686 * Math.cos((lat * Math.PI) / 180)) / scale();
    const target = metresPerPx * Math.min(120, w / 4);
    const pow = 10 ** Math.floor(Math.log10(target));
    const nice = [5, 2, 1].map((k) => k * pow).find((v) => v <= target) || pow;
    const px = nice / metresPerPx;
    const box = $('map-scale');
    box.querySelector('.map-scale-bar').style.width = `${px.toFixed(0)}px`;
    box.querySelector('.map-scale-label').textContent = nice >= 1000 ? t('km', { n: fmtNumber(nice / 1000) }) : t('m', { n: fmtNumber(nice, 0) });
  }

  function renderMapStatus() {
    const m = state.map;
    if (m.status === 'loading') return panelStatus('map-status', t('map.loading'));
    if (m.status === 'error') return panelStatus('map-status', t('map.error', { err: errText(m.error) }), 'error');
    let text = t('map.count', { sites: fmtNumber(m.sites.length, 0), aeds: fmtNumber(m.aeds.length, 0), childcare: fmtNumber(m.childcare.length, 0) });
    if (state.hazard) text += t('map.filtered', { n: m.sites.filter(siteMatchesHazard).length, hazard: t(`hazard.${state.hazard}`) });
    if (m.failed.length) {
      panelStatus('map-status', `${text} — ${t('map.partial', { what: m.failed.join(', ') })}`, 'error');
    } else panelStatus('map-status', text);
  }

  function renderSiteSelect() {
    const s = $('site-select');
    const keep = s.value;
    const groups = new Map();
    for (const site of state.map.sites) {
      if (!siteMatchesHazard(site)) continue;
      const d = str(site.district) || 'other';
      if (!groups.has(d)) groups.set(d, []);
      groups.get(d).push(site);
    }
    const order = ['west', 'central', 'east'];
    const keys = [...groups.keys()].sort((a, b) => (order.indexOf(a) + 1 || 9) - (order.indexOf(b) + 1 || 9));
    const option = (site) => el('option', { value: site.id, text: str(site.name) || site.id });
    const children = [el('option', { value: '', text: t('nearest.choosePrompt') })];
    if (keys.length === 1) children.push(...groups.get(keys[0]).map(option));
    else {
      for (const k of keys) {
        const label = I18N.ja[`district.${k}`] ? t(`district.${k}`) : k;
        children.push(el('optgroup', { label }, groups.get(k).map(option)));
      }
    }
    s.replaceChildren(...children);
    s.value = [...s.options].some((o) => o.value === keep) ? keep : '';
    s.disabled = state.map.sites.length === 0;
  }

  // ---------------------------------------------------------------------------------------------
  // Nearest evacuation sites
  // ---------------------------------------------------------------------------------------------

  function locate() {
    if (!navigator.geolocation) {
      panelStatus('nearest-status', t('nearest.gpsUnsupported'), 'error');
      return;
    }
    panelStatus('nearest-status', t('nearest.locating'));
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        const lon = pos.coords.longitude;
        const lat = pos.coords.latitude;
        if (state.view) {
          state.view.cx = mercX(lon);
          state.view.cy = mercY(lat);
          state.view.zoom = Math.max(state.view.zoom, 13);
        }
        findNearest({ lon, lat, source: 'gps' });
      },
      (err) => panelStatus('nearest-status', t('nearest.gpsError', { err: err.message || err.code }), 'error'),
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 },
    );
  }

  async function findNearest(point) {
    const token = ++state.nearToken;
    const tenant = state.tenant;
    const lonS = point.lon.toFixed(6);
    const latS = point.lat.toFixed(6);
    state.point = { ...point, lon: Number(lonS), lat: Number(latS) };
    state.nearest = { status: 'loading', items: [] };
    const list = $('nearest-list');
    list.dataset.lon = lonS;
    list.dataset.lat = latS;
    renderNearest();
    renderMap();
    const limit = state.hazard ? 100 : NEAR_LIMIT;
    try {
      let found = [];
      let radius = NEAR_DISTANCES[0];
      for (radius of NEAR_DISTANCES) {
        found = await getJson(
          '/ngsi-ld/v1/entities',
          {
            type: 'EvacuationSite',
            georel: `near;maxDistance==${radius}`,
            geometry: 'Point',
            coordinates: `[${lonS},${latS}]`,
            options: 'keyValues',
            limit,
          },
          tenant,
        );
        if (token !== state.nearToken) return;
        if (!Array.isArray(found)) found = [];
        if (found.filter(siteMatchesHazard).length) break;
      }
      // Keep the API's order (nearest first); only the hazard filter removes items.
      const items = found.filter(siteMatchesHazard).slice(0, NEAR_LIMIT);
      state.nearest = { status: items.length ? 'ready' : 'empty', items, radius, limit };
    } catch (error) {
      if (token !== state.nearToken) return;
      state.nearest = { status: 'error', items: [], error };
    }
    renderNearest();
    renderMap();
  }

  function describePoint(p) {
    const vars = { lat: p.lat.toFixed(4), lon: p.lon.toFixed(4), name: p.name || '' };
    switch (p.source) {
      case 'gps':
        return t('nearest.fromGps', vars);
      case 'site':
        return t('nearest.fromSite', vars);
      case 'center':
        return t('nearest.fromCenter', vars);
      default:
        return t('nearest.fromClick', vars);
    }
  }

  function renderNearest() {
    const list = $('nearest-list');
    const n = state.nearest;
    list.dataset.state = n ? n.status : 'idle';
    if (!n || !state.point) {
      delete list.dataset.lon;
      delete list.dataset.lat;
      delete list.dataset.maxDistance;
      list.replaceChildren();
      panelStatus('nearest-status', t('nearest.hint'));
      return;
    }
    if (n.radius) list.dataset.maxDistance = String(n.radius);
    if (n.limit) list.dataset.limit = String(n.limit);
    const where = describePoint(state.point);
    if (n.status === 'loading') panelStatus('nearest-status', t('nearest.searching'));
    else if (n.status === 'error') panelStatus('nearest-status', t('nearest.error', { err: errText(n.error) }), 'error');
    else if (n.status === 'empty') panelStatus('nearest-status', t('nearest.none', { radius: fmtDistance(n.radius) }));
    else {
      const vars = { where, n: n.items.length, radius: fmtDistance(n.radius), hazard: state.hazard ? t(`hazard.${state.hazard}`) : '' };
      panelStatus('nearest-status', t(state.hazard ? 'nearest.resultFiltered' : 'nearest.result', vars));
    }
    const operated = shelterBySite();
    list.replaceChildren(
      ...n.items.map((site, i) => {
        const p = pointOf(site);
        const d = p ? haversine(state.point.lon, state.point.lat, p[0], p[1]) : null;
        const cap = num(site.maxCapacity);
        const isShelter = bool(site.alsoDesignatedShelter) || operated.has(site.id);
        const hazards = arr(site.hazardTypes).filter((h) => HAZARDS.includes(h));
        return el(
          'li',
          { class: 'nearest-item', dataset: { testid: 'nearest-item', id: site.id } },
          el('span', { class: 'rank-badge', 'aria-hidden': 'true', text: String(i + 1) }),
          el(
            'div',
            { class: 'nearest-body' },
            el(
              'div',
              { class: 'nearest-top' },
              el('button', {
                type: 'button',
                class: 'link-btn nearest-name',
                text: str(site.name) || site.id,
                onclick: () => selectEntity(site, { center: true }),
              }),
              el('span', { class: 'nearest-dist', text: d === null ? '' : fmtDistance(d) }),
            ),
            el(
              'div',
              { class: 'nearest-meta' },
              cap !== null ? el('span', { text: t('nearest.capacity', { n: fmtNumber(cap, 0) }) }) : null,
              isShelter ? el('span', { class: 'tag tag-shelter', text: t('nearest.shelterTag') }) : null,
            ),
            hazards.length
              ? el(
                  'ul',
                  { class: 'chips', 'aria-label': t('details.hazards') },
                  hazards.map((h) => el('li', { class: `chip${h === state.hazard ? ' is-match' : ''}`, text: t(`hazard.${h}`) })),
                )
              : null,
          ),
        );
      }),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Details of a facility
  // ---------------------------------------------------------------------------------------------

  function selectEntity(e, opts) {
    state.selectedId = e.id;
    if (opts && opts.center && state.view) {
      const p = pointOf(e);
      if (p) {
        state.view.cx = mercX(p[0]);
        state.view.cy = mercY(p[1]);
      }
    }
    renderDetails();
    keepClearOfDetails(e);
    renderMap();
  }

  /** Pans the map so that the selected facility is not hidden under the details card. */
  function keepClearOfDetails(e) {
    const box = $('details');
    const p = pointOf(e);
    if (!state.view || !p || box.hidden || getComputedStyle(box).position !== 'absolute') return;
    const mapRect = $('map-svg').getBoundingClientRect();
    const card = box.getBoundingClientRect();
    const right = card.right - mapRect.left;
    const top = card.top - mapRect.top;
    const [x, y] = project(p[0], p[1]);
    if (x > right + 16 || y < top - 16) return;
    const { w } = mapSize();
    const s = scale();
    state.view.cx += (x - (right + (w - right) / 2)) / s;
  }

  function renderDetails() {
    const box = $('details');
    const e = state.selectedId ? findEntity(state.selectedId) : null;
    if (!e) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    box.hidden = false;
    const type = shortType(e);
    const rows = [];
    const row = (label, value) => {
      if (value === null || value === undefined || value === '') return;
      rows.push(el('dt', { text: label }), el('dd', {}, value));
    };
    const yesNo = (x) => (val(x) === undefined ? null : bool(x) ? t('details.yes') : t('details.no'));
    const address = val(e.address);
    const addressText = address && typeof address === 'object' ? str(address.addressText) : str(address);
    row(t('details.address'), addressText);
    let typeLabel = t(`type.${type}`);
    if (type === 'EvacuationSite') {
      const op = shelterBySite().get(e.id);
      const cap = num(e.maxCapacity);
      row(t('details.capacity'), cap === null ? null : t('details.people', { n: fmtNumber(cap, 0) }));
      const hazards = arr(e.hazardTypes).filter((h) => HAZARDS.includes(h));
      row(
        t('details.hazards'),
        hazards.length ? el('ul', { class: 'chips' }, hazards.map((h) => el('li', { class: 'chip', text: t(`hazard.${h}`) }))) : t('details.noHazards'),
      );
      const elev = num(e.elevation);
      row(t('details.elevation'), elev === null ? null : t('m', { n: fmtNumber(elev) }));
      if (bool(e.alsoDesignatedShelter) || op) {
        typeLabel = `${typeLabel} · ${t('type.EvacuationShelter')}`;
      }
      if (op) {
        const open = str(op.openingStatus) === 'open';
        const label = open ? t('details.open') : t('details.closed');
        const extra = str(op.statusLabel) && str(op.statusLabel) !== label ? ` — ${str(op.statusLabel)}` : '';
        row(t('details.status'), el('span', { class: `status ${open ? 'is-open' : 'is-closed'}`, text: label + extra }));
        if (open) {
          const ev = num(op.evacueeTotal);
          row(t('details.evacuees'), ev === null ? null : t('details.people', { n: fmtNumber(ev, 0) }));
          const at = time(op.openedAt);
          row(t('details.openedAt'), at === null ? null : fmtDateTime(at));
        }
      }
      const d = str(e.district);
      row(t('details.district'), d ? (I18N.ja[`district.${d}`] ? t(`district.${d}`) : d) : null);
      row(t('details.telephone'), str(e.telephone));
    } else if (type === 'EvacuationShelter') {
      const open = str(e.openingStatus) === 'open';
      row(t('details.status'), open ? t('details.open') : t('details.closed'));
      row(t('details.evacuees'), num(e.evacueeTotal) === null ? null : t('details.people', { n: fmtNumber(num(e.evacueeTotal), 0) }));
    } else if (type === 'AED') {
      row(t('details.position'), str(e.installationPosition));
      row(t('details.days'), str(e.availableDays));
      const hours = [str(e.openingTime), str(e.closingTime)].filter(Boolean).join('–');
      row(t('details.hours'), hours + (str(e.availabilityNotes) ? ` (${str(e.availabilityNotes)})` : ''));
      row(t('details.pediatric'), yesNo(e.pediatricSupport));
      row(t('details.operator'), str(e.operator));
      row(t('details.telephone'), str(e.telephone));
    } else if (type === 'ChildcareFacility') {
      row(t('details.facilityType'), str(e.facilityType));
      const cap = num(e.capacity);
      row(t('details.capacityChild'), cap === null ? null : t('details.people', { n: fmtNumber(cap, 0) }));
      row(t('details.ages'), str(e.acceptedAges));
      const hours = [str(e.openingTime), str(e.closingTime)].filter(Boolean).join('–');
      row(t('details.hours'), hours);
      row(t('details.temporaryCare'), yesNo(e.temporaryCare));
      row(t('details.telephone'), str(e.telephone));
    }
    const p = pointOf(e);
    box.replaceChildren(
      el(
        'div',
        { class: 'details-head' },
        el('div', {}, el('p', { class: 'details-type', text: typeLabel }), el('h3', { class: 'details-name', text: str(e.name) || e.id })),
        el('button', {
          type: 'button',
          class: 'btn btn-quiet btn-small',
          text: t('details.close'),
          onclick: () => {
            state.selectedId = null;
            renderDetails();
            renderMap();
          },
        }),
      ),
      el('dl', { class: 'details-list' }, rows),
      p
        ? el('button', {
            type: 'button',
            class: 'btn btn-quiet btn-small',
            text: t('details.searchHere'),
            onclick: () => findNearest({ lon: p[0], lat: p[1], source: 'site', name: str(e.name) }),
          })
        : null,
    );
    box.dataset.id = e.id;
  }

  // ---------------------------------------------------------------------------------------------
  // Alerts
  // ---------------------------------------------------------------------------------------------

  function sortedAlerts() {
    const list = [...state.alerts.values()];
    list.sort((a, b) => {
      const la = state.liveAt.get(a.id) || 0;
      const lb = state.liveAt.get(b.id) || 0;
      if (la !== lb) return lb - la; // live changes first, the latest on top
      return (time(b.dateIssued) || 0) - (time(a.dateIssued) || 0);
    });
    return list;
  }

  function severityOf(a) {
    const s = str(a.severity);
    return SEVERITY_RANK[s] ? s : 'informational';
  }

  function renderAlerts() {
    const listEl = $('alerts-list');
    if (state.alertsStatus === 'loading') {
      panelStatus('alerts-status', t('alerts.loading'));
      listEl.replaceChildren();
      renderAlertStrip([]);
      return;
    }
    if (state.alertsStatus === 'error') {
      panelStatus('alerts-status', t('alerts.error', { err: errText(state.alertsError) }), 'error');
    }
    const alerts = sortedAlerts();
    if (state.alertsStatus !== 'error') panelStatus('alerts-status', alerts.length ? '' : t('alerts.none'));
    const now = Date.now();
    // Reuse the existing nodes so that screen readers only hear what changed.
    const existing = new Map([...listEl.children].map((li) => [li.dataset.id, li]));
    const nodes = alerts.map((a) => {
      const sev = severityOf(a);
      const cat = str(a.category);
      const issued = time(a.dateIssued);
      const validTo = time(a.validTo);
      const expired = validTo !== null && validTo < now;
      const live = state.liveAt.has(a.id);
      const li = el(
        'li',
        { class: `alert-item sev-${sev}${expired ? ' is-expired' : ''}${live ? ' is-live' : ''}`, dataset: { testid: 'alert-item', id: a.id, severity: sev } },
        el(
          'div',
          { class: 'alert-top' },
          el('span', { class: `sev-badge sev-${sev}`, text: t(`severity.${sev}`) }),
          cat ? el('span', { class: 'alert-cat', text: I18N.ja[`category.${cat}`] ? t(`category.${cat}`) : cat }) : null,
          live ? el('span', { class: 'alert-new', text: t('alerts.updated') }) : null,
          expired ? el('span', { class: 'alert-expired', text: t('alerts.expired') }) : null,
        ),
        el('p', { class: 'alert-name', text: str(a.name) || a.id }),
        str(a.description) ? el('p', { class: 'alert-desc', text: str(a.description) }) : null,
        el(
          'p',
          { class: 'alert-times' },
          el('span', {}, `${t('alerts.issued')}: `, el('time', { datetime: str(a.dateIssued), text: fmtDateTime(issued) })),
          validTo !== null ? el('span', {}, `${t('alerts.validTo')}: `, el('time', { datetime: str(a.validTo), text: fmtDateTime(validTo) })) : null,
        ),
        str(a.alertSource) ? el('p', { class: 'alert-source', text: `${t('alerts.source')}: ${str(a.alertSource)}` }) : null,
      );
      const old = existing.get(a.id);
      if (old && old.isEqualNode(li)) return old;
      return li;
    });
    listEl.replaceChildren(...nodes);
    renderAlertStrip(alerts.filter((a) => {
      const v = time(a.validTo);
      return (v === null || v >= now) && SEVERITY_RANK[severityOf(a)] >= SEVERITY_RANK.high;
    }));
  }

  /** A strip under the header naming the most severe alert in force (high or critical only). */
  function renderAlertStrip(serious) {
    const strip = $('alert-strip');
    if (!serious.length) {
      strip.hidden = true;
      strip.replaceChildren();
      return;
    }
    serious.sort((a, b) => SEVERITY_RANK[severityOf(b)] - SEVERITY_RANK[severityOf(a)] || (time(b.dateIssued) || 0) - (time(a.dateIssued) || 0));
    const top = serious[0];
    const sev = severityOf(top);
    strip.hidden = false;
    strip.className = `alert-strip sev-${sev}`;
    strip.replaceChildren(
      el(
        'div',
        { class: 'alert-strip-inner' },
        el('span', { class: `sev-badge sev-${sev} sev-inverse`, text: t(`severity.${sev}`) }),
        el('span', { class: 'alert-strip-text' }, `${t('alerts.strip')} `, el('strong', { text: str(top.name) || top.id }), serious.length > 1 ? ` ${t('alerts.stripMore', { n: serious.length - 1 })}` : ''),
        el('a', { href: '#alerts-panel', text: t('alerts.stripLink') }),
      ),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Zero carbon: stacked bars and the target path
  // ---------------------------------------------------------------------------------------------

  let chartFrame = 0;
  let lastChartWidth = 0;
  function scheduleChartRender() {
    if (chartFrame) return;
    chartFrame = requestAnimationFrame(() => {
      chartFrame = 0;
      const w = $('co2-chart').clientWidth;
      if (w && Math.abs(w - lastChartWidth) > 2) renderEmissions();
    });
  }

  function emissionModel() {
    const { records, targets } = state.emissions;
    const byYear = new Map();
    for (const r of records) {
      const y = num(r.fiscalYear);
      const sector = str(r.sector);
      const v = num(r.emission);
      if (y === null || v === null || !SECTORS.includes(sector)) continue;
      if (!byYear.has(y)) byYear.set(y, Object.fromEntries(SECTORS.map((s) => [s, 0])));
      byYear.get(y)[sector] += v;
    }
    const years = [...byYear.keys()].sort((a, b) => a - b);
    const path = targets
      .map((x) => ({ year: num(x.fiscalYear), value: num(x.targetEmission), base: num(x.baseFiscalYear) }))
      .filter((x) => x.year !== null && x.value !== null)
      .sort((a, b) => a.year - b.year);
    // The path ends at net zero in 2050.
    if (!path.some((p) => p.year === NET_ZERO_YEAR) && (!path.length || path[path.length - 1].year < NET_ZERO_YEAR)) {
      path.push({ year: NET_ZERO_YEAR, value: 0 });
    }
    const baseYear = path.find((p) => p.base !== null && p.base !== undefined)?.base ?? null;
    return { byYear, years, path, baseYear };
  }

  /** The target for a year, interpolated linearly between the milestones. */
  function targetAt(path, year) {
    if (!path.length || year < path[0].year || year > path[path.length - 1].year) return null;
    for (let i = 0; i < path.length - 1; i++) {
      const a = path[i];
      const b = path[i + 1];
      if (year >= a.year && year <= b.year) return b.year === a.year ? a.value : a.value + ((b.value - a.value) * (year - a.year)) / (b.year - a.year);
    }
    return path[path.length - 1].value;
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const pow = 10 ** Math.floor(Math.log10(v));
    for (const k of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (k * pow >= v) return k * pow;
    return 10 * pow;
  }

  function renderEmissions() {
    const chart = $('co2-chart');
    const legend = $('co2-legend');
    const table = $('co2-table');
    const summary = $('co2-summary');
    const sampleNote = $('co2-sample');
    const hasChart = !!(state.emissions && state.emissions.records && state.emissions.records.length);
    legend.hidden = !hasChart;
    table.closest('details').hidden = !hasChart;
    legend.replaceChildren(
      ...SECTORS.map((s) => el('li', { dataset: { sector: s } }, el('span', { class: `swatch sector-${s}`, 'aria-hidden': 'true' }), t(`sector.${s}`))),
      el('li', { class: 'legend-target' }, el('span', { class: 'swatch swatch-line', 'aria-hidden': 'true' }), t('co2.target', { netZero: NET_ZERO_YEAR })),
    );
    const e = state.emissions;
    if (!e) {
      panelStatus('co2-status', t('alerts.loading'));
      chart.replaceChildren();
      table.replaceChildren();
      summary.textContent = '';
      sampleNote.hidden = true;
      return;
    }
    if (e.error) {
      panelStatus('co2-status', t('co2.error', { err: errText(e.error) }), 'error');
      chart.replaceChildren();
      table.replaceChildren();
      summary.textContent = '';
      sampleNote.hidden = true;
      return;
    }
    const model = emissionModel();
    if (!model.years.length) {
      panelStatus('co2-status', t('co2.none'));
      chart.replaceChildren();
      table.replaceChildren();
      summary.textContent = '';
      sampleNote.hidden = true;
      return;
    }
    panelStatus('co2-status', '');
    const isSample = [...e.records, ...e.targets].some((x) => bool(x.sampleData));
    sampleNote.hidden = !isSample;
    sampleNote.textContent = t('co2.sample');

    const { byYear, years, path, baseYear } = model;
    const total = (y) => SECTORS.reduce((acc, s) => acc + byYear.get(y)[s], 0);
    const last = years[years.length - 1];
    const baseTotal = baseYear !== null && byYear.has(baseYear) ? total(baseYear) : null;
    if (baseTotal) {
      const change = (total(last) - baseTotal) / baseTotal;
      const sign = change > 0 ? '+' : change < 0 ? '−' : '±';
      summary.textContent = t('co2.summary', {
        year: fy(last),
        total: fmtNumber(total(last), 0),
        baseYear: fy(baseYear),
        change: `${sign}${fmtNumber(Math.abs(change) * 100, 1)}%`,
        netZero: NET_ZERO_YEAR,
      });
    } else summary.textContent = t('co2.summaryNoBase', { year: fy(last), total: fmtNumber(total(last), 0), netZero: NET_ZERO_YEAR });

    // Geometry.
    const W = Math.max(320, chart.clientWidth || 720);
    lastChartWidth = W;
    const narrow = W < 520;
    const H = narrow ? 280 : 340;
    const m = { top: 30, right: 14, bottom: 34, left: narrow ? 46 : 58 };
    const firstYear = Math.min(years[0], path.length ? path[0].year : years[0]);
    const lastYear = Math.max(NET_ZERO_YEAR, years[years.length - 1]);
    const span = lastYear - firstYear + 1;
    const plotW = W - m.left - m.right;
    const plotH = H - m.top - m.bottom;
    const band = plotW / span;
    const xOf = (y) => m.left + (y - firstYear + 0.5) * band;
    const maxV = niceMax(Math.max(...years.map(total), ...path.map((p) => p.value)) * 1.05);
    const yOf = (v) => m.top + plotH - (v / maxV) * plotH;
    const barW = Math.max(2, Math.min(28, band * 0.72));

    const root = svg('svg', {
      class: 'co2-svg',
      viewBox: `0 0 ${W} ${H}`,
      width: W,
      height: H,
      role: 'img',
      'aria-label': t('co2.chartLabel', { from: fy(years[0]), to: fy(lastYear) }),
      dataset: { testid: 'emission-chart' },
    });
    // Grid and y axis.
    const ticks = 5;
    const grid = svg('g', { class: 'grid', 'aria-hidden': 'true' });
    for (let i = 0; i <= ticks; i++) {
      const v = (maxV / ticks) * i;
      const y = yOf(v);
      grid.append(
        svg('line', { x1: m.left, x2: W - m.right, y1: y, y2: y, class: i === 0 ? 'axis' : 'gridline' }),
        svg('text', { x: m.left - 6, y, dy: '0.32em', 'text-anchor': 'end', class: 'tick', text: fmtNumber(v, 0) }),
      );
    }
    grid.append(svg('text', { x: 4, y: 12, class: 'tick unit', text: t('co2.unit') }));
    // X axis labels: first year, then every 5 years, and 2050.
    const step = narrow ? 10 : 5;
    for (let y = firstYear; y <= lastYear; y++) {
      if (y === firstYear || y % step === 0 || y === lastYear) {
        if (y !== firstYear && y !== lastYear && (y - firstYear < step / 2 || lastYear - y < step / 2)) continue;
        grid.append(
          svg('line', { x1: xOf(y), x2: xOf(y), y1: m.top + plotH, y2: m.top + plotH + 4, class: 'axis' }),
          svg('text', { x: xOf(y), y: m.top + plotH + 18, 'text-anchor': 'middle', class: 'tick', text: String(y) }),
        );
      }
    }
    root.append(grid);
    // Stacked bars.
    const bars = svg('g', { class: 'bars' });
    for (const y of years) {
      let acc = 0;
      const g = svg('g', { class: 'bar', dataset: { year: String(y) } });
      for (const s of SECTORS) {
        const v = byYear.get(y)[s];
        if (v <= 0) continue;
        const y0 = yOf(acc);
        const y1 = yOf(acc + v);
        acc += v;
        g.append(
          svg(
            'rect',
            { x: (xOf(y) - barW / 2).toFixed(1), y: y1.toFixed(1), width: barW.toFixed(1), height: Math.max(0.5, y0 - y1).toFixed(1), class: `seg sector-${s}`, dataset: { sector: s, year: String(y), value: String(v) } },
            svg('title', { text: `${fy(y)} ${t(`sector.${s}`)}: ${fmtNumber(v)} ${t('co2.unit')}` }),
          ),
        );
      }
      bars.append(g);
    }
    root.append(bars);
    // Target path.
    if (path.length) {
      const pts = path.map((p) => `${xOf(p.year).toFixed(1)},${yOf(p.value).toFixed(1)}`).join(' ');
      const tg = svg('g', { class: 'target' });
      tg.append(svg('polyline', { points: pts, class: 'target-line', dataset: { testid: 'target-line' } }));
      path.forEach((p, i) => {
        const x = xOf(p.year);
        const y = yOf(p.value);
        tg.append(svg('circle', { cx: x, cy: y, r: 4, class: 'target-point' }, svg('title', { text: `${fy(p.year)} ${t('co2.targetCol')}: ${fmtNumber(p.value)} ${t('co2.unit')}` })));
        const label = p.value === 0 ? (state.lang === 'ja' ? '実質ゼロ' : 'Net zero') : fmtNumber(p.value, 0);
        const anchor = i === path.length - 1 ? 'end' : 'start';
        tg.append(svg('text', { x: x + (anchor === 'end' ? -4 : 6), y: y - 8, 'text-anchor': anchor, class: 'target-label', text: `${p.year}: ${label}` }));
      });
      root.append(tg);
    }
    chart.replaceChildren(root);

    // The same figures as a table.
    const head = el('tr', {}, el('th', { scope: 'col', text: t('co2.year') }), SECTORS.map((s) => el('th', { scope: 'col', text: t(`sector.${s}`) })), el('th', { scope: 'col', text: t('co2.total') }), el('th', { scope: 'col', text: t('co2.targetCol') }));
    const rowYears = [...new Set([...years, ...path.map((p) => p.year)])].sort((a, b) => a - b);
    const body = rowYears.map((y) => {
      const has = byYear.has(y);
      const target = targetAt(path, y);
      return el(
        'tr',
        {},
        el('th', { scope: 'row', text: fy(y) }),
        SECTORS.map((s) => el('td', { text: has ? fmtNumber(byYear.get(y)[s]) : '–' })),
        el('td', { text: has ? fmtNumber(total(y)) : '–' }),
        el('td', { text: target === null ? '–' : fmtNumber(target) }),
      );
    });
    table.replaceChildren(el('table', {}, el('caption', { text: `${t('co2.heading')} (${t('co2.unit')})` }), el('thead', {}, head), el('tbody', {}, body)));
  }

  // ---------------------------------------------------------------------------------------------
  // KPI board
  // ---------------------------------------------------------------------------------------------

  function yearly(kpi) {
    const v = val(kpi.yearlyValues);
    if (!Array.isArray(v)) return [];
    return v
      .map((p) => {
        const o = val(p) || {};
        const key = (suffix) => Object.keys(o).find((k) => k === suffix || k.endsWith(`/${suffix}`) || k.endsWith(`:${suffix}`));
        return { year: num(o[key('fiscalYear')]), value: num(o[key('value')]) };
      })
      .filter((p) => p.year !== null && p.value !== null)
      .sort((a, b) => a.year - b.year);
  }

  function renderKpis() {
    const board = $('kpi-board');
    const k = state.kpis;
    if (!k) {
      panelStatus('kpi-status', t('alerts.loading'));
      board.replaceChildren();
      return;
    }
    if (k.error) {
      panelStatus('kpi-status', t('kpi.error', { err: errText(k.error) }), 'error');
      board.replaceChildren();
      return;
    }
    if (!k.length) {
      panelStatus('kpi-status', t('kpi.none'));
      board.replaceChildren();
      return;
    }
    panelStatus('kpi-status', '');
    const list = [...k].sort((a, b) => (num(a.policyGoal) ?? 99) - (num(b.policyGoal) ?? 99));
    board.replaceChildren(...list.map(kpiCard));
  }

  function kpiCard(kpi) {
    const goal = num(kpi.policyGoal);
    const series = yearly(kpi);
    const value = num(kpi.kpiValue) ?? (series.length ? series[series.length - 1].value : null);
    const target = num(kpi.kpiTarget);
    const unit = str(kpi.unit);
    const dir = str(kpi.direction) === 'decrease' ? 'decrease' : 'increase';
    const latestYear = series.length ? series[series.length - 1].year : null;
    let status = null;
    if (value !== null && target !== null) {
      const met = dir === 'increase' ? value >= target : value <= target;
      const gap = Math.abs(target - value);
      status = met
        ? el('span', { class: 'kpi-status is-met', text: t('kpi.achieved') })
        : el('span', { class: 'kpi-status', text: t('kpi.notAchieved', { gap: `${fmtNumber(gap)}${unitSep(unit)}${unit}` }) });
    }
    const indicator = str(kpi.indicatorName) || str(kpi.name);
    return el(
      'article',
      { class: `kpi-card goal-${goal ?? 0}`, dataset: { testid: 'kpi-card', goal: String(goal ?? ''), id: kpi.id } },
      el(
        'header',
        { class: 'kpi-head' },
        el('span', { class: 'goal-badge', text: t('kpi.goal', { n: goal ?? '?' }) }),
        el('h3', { class: 'kpi-goal', text: str(kpi.policyGoalName) }),
      ),
      el('p', { class: 'kpi-indicator', text: indicator }),
      el(
        'p',
        { class: 'kpi-value' },
        el('span', { class: 'kpi-number', text: fmtNumber(value) }),
        el('span', { class: 'kpi-unit', text: unit }),
      ),
      el('p', { class: 'kpi-year', text: latestYear !== null ? t('kpi.latest', { year: fy(latestYear) }) : '' }),
      sparkline(series, target, indicator, unit),
      el(
        'p',
        { class: 'kpi-target' },
        el('span', {}, `${t('kpi.target')} `, el('strong', { text: `${fmtNumber(target)}${unitSep(unit)}${unit}` })),
        el('span', { class: 'kpi-dir', text: `${dir === 'increase' ? '↑' : '↓'} ${t(`kpi.${dir}`)}` }),
      ),
      status,
    );
  }

  function unitSep(unit) {
    return /^[%％]/.test(unit) || state.lang === 'ja' ? '' : ' ';
  }

  function sparkline(series, target, indicator, unit) {
    const W = 220;
    const H = 56;
    const pad = { l: 4, r: 4, t: 6, b: 6 };
    const values = series.map((p) => p.value);
    const label = t('kpi.trend', { indicator, values: series.map((p) => `${fy(p.year)} ${fmtNumber(p.value)}${unitSep(unit)}${unit}`).join(', ') });
    const root = svg('svg', { class: 'sparkline', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
    if (series.length < 2) return root;
    let lo = Math.min(...values, target ?? Infinity);
    let hi = Math.max(...values, target ?? -Infinity);
    if (hi === lo) {
      hi += 1;
      lo -= 1;
    }
    const x = (i) => pad.l + (i / (series.length - 1)) * (W - pad.l - pad.r);
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (H - pad.t - pad.b);
    if (target !== null) root.append(svg('line', { x1: pad.l, x2: W - pad.r, y1: y(target), y2: y(target), class: 'spark-target' }));
    const pts = series.map((p, i) => `${x(i).toFixed(1)},${y(p.value).toFixed(1)}`);
    root.append(svg('polygon', { points: `${pad.l},${H - pad.b} ${pts.join(' ')} ${W - pad.r},${H - pad.b}`, class: 'spark-area' }));
    root.append(svg('polyline', { points: pts.join(' '), class: 'spark-line' }));
    const lastI = series.length - 1;
    // A round dot that stays round when the line is stretched to the card's width.
    root.append(svg('line', { x1: x(lastI), x2: x(lastI), y1: y(series[lastI].value), y2: y(series[lastI].value), class: 'spark-dot' }));
    return root;
  }

  // ---------------------------------------------------------------------------------------------
  // Neighbourhood notices
  // ---------------------------------------------------------------------------------------------

  function renderNotices() {
    const list = $('notices-list');
    const n = state.notices;
    if (!n) {
      panelStatus('notices-status', t('alerts.loading'));
      list.replaceChildren();
      return;
    }
    if (n.error) {
      panelStatus('notices-status', t('notices.error', { err: errText(n.error) }), 'error');
      list.replaceChildren();
      return;
    }
    panelStatus('notices-status', n.length ? '' : t('notices.none'));
    const sorted = [...n].sort((a, b) => (time(b.publishedAt) || 0) - (time(a.publishedAt) || 0));
    list.replaceChildren(
      ...sorted.map((x) => {
        const cat = str(x.category);
        const body = str(x.articleBody);
        return el(
          'li',
          { class: 'notice', dataset: { testid: 'notice-item', id: x.id } },
          el(
            'div',
            { class: 'notice-meta' },
            cat ? el('span', { class: 'tag', text: I18N.ja[`notice.${cat}`] ? t(`notice.${cat}`) : cat }) : null,
            el('span', { class: 'notice-assoc', text: str(x.association) }),
            el('time', { datetime: str(x.publishedAt), text: fmtDate(time(x.publishedAt)) }),
          ),
          body
            ? el('details', { class: 'notice-details' }, el('summary', {}, el('span', { class: 'notice-headline', text: str(x.headline) })), el('p', { class: 'notice-body', text: body }))
            : el('p', { class: 'notice-headline', text: str(x.headline) }),
        );
      }),
    );
  }

  // ---------------------------------------------------------------------------------------------

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
