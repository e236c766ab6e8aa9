//! Geo-queries (clause 4.10): `georel` with `geometry` and `coordinates` on a GeoProperty.
//!
//! Relations are exact (DE-9IM via the `geo` crate) in longitude/latitude; `near` distances are
//! great-circle distances in metres (haversine on the WGS84 mean radius) to the closest point of
//! the entity's geometry. [`GeoQuery::envelope`] gives the box an index can pre-select with.

use geo::{
    Closest, ClosestPoint, Coord, Distance, Geometry, Haversine, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon, Relate,
};
use haskap_model::entity::{AttrKind, Entity};
use serde_json::Value;

/// Metres per degree of latitude (and of longitude at the equator), for index boxes: a little
/// under the 111,195 m of the sphere distances are measured on, so that boxes err on the large side.
const METRES_PER_DEGREE: f64 = 111_000.0;

/// A geo relation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GeoRel {
    /// Within `max` metres and at least `min` metres.
    Near {
        /// `maxDistance`, metres.
        max: Option<f64>,
        /// `minDistance`, metres.
        min: Option<f64>,
    },
    /// The entity's geometry is within the query geometry.
    Within,
    /// The entity's geometry contains the query geometry.
    Contains,
    /// The geometries intersect.
    Intersects,
    /// The geometries are equal.
    Equals,
    /// The geometries do not intersect.
    Disjoint,
    /// The geometries overlap.
    Overlaps,
}

/// A geo-query ready to run.
#[derive(Debug, Clone)]
pub struct GeoQuery {
    /// The relation.
    pub rel: GeoRel,
    /// The query geometry.
    pub geometry: Geometry<f64>,
    /// The GeoProperty (expanded name) the query applies to.
    pub property: String,
}

/// Why a geo-query is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GeoError(pub String);

impl GeoRel {
    /// Parses `georel`: `near;maxDistance==2000`, `near;minDistance==10`, `within`, ...
    pub fn parse(s: &str) -> Result<GeoRel, GeoError> {
        let mut parts = s.split(';');
        let rel = parts.next().unwrap_or("");
        let rel = match rel {
            "near" => {
                let (mut max, mut min) = (None, None);
                for p in parts.by_ref() {
                    let (k, v) = p
                        .split_once("==")
                        .ok_or_else(|| GeoError(format!("georel modifier {p:?} is not name==metres")))?;
                    let d: f64 =
                        v.parse().ok().filter(|d: &f64| d.is_finite() && *d >= 0.0).ok_or_else(|| {
                            GeoError(format!("distance {v:?} is not a non-negative number of metres"))
                        })?;
                    match k {
                        "maxDistance" => max = Some(d),
                        "minDistance" => min = Some(d),
                        other => {
                            return Err(GeoError(format!(
                                "unknown near modifier {other:?}; use maxDistance or minDistance"
                            )));
                        }
                    }
                }
                if max.is_none() && min.is_none() {
                    return Err(GeoError("near needs maxDistance or minDistance".into()));
                }
                GeoRel::Near { max, min }
            }
            "within" => GeoRel::Within,
            "contains" => GeoRel::Contains,
            "intersects" => GeoRel::Intersects,
            "equals" => GeoRel::Equals,
            "disjoint" => GeoRel::Disjoint,
            "overlaps" => GeoRel::Overlaps,
            other => {
                return Err(GeoError(format!(
                    "unknown georel {other:?}; known are near, within, contains, intersects, equals, disjoint, overlaps"
                )));
            }
        };
        if parts.next().is_some() {
            return Err(GeoError(format!("georel {s:?} has modifiers where none are allowed")));
        }
        Ok(rel)
    }
}

impl GeoQuery {
    /// Builds a query from `georel`, `geometry`, the coordinates (parsed JSON) and the expanded
    /// GeoProperty name.
    pub fn new(georel: &str, geometry: &str, coordinates: &Value, property: String) -> Result<GeoQuery, GeoError> {
        let rel = GeoRel::parse(georel)?;
        let geometry = to_geometry(&serde_json::json!({"type": geometry, "coordinates": coordinates}))?;
        if matches!(rel, GeoRel::Near { .. }) && !matches!(geometry, Geometry::Point(_)) {
            return Err(GeoError("near takes a Point".into()));
        }
        Ok(GeoQuery { rel, geometry, property })
    }

    /// A lon/lat box `[min_lon, min_lat, max_lon, max_lat]` outside which no entity can match,
    /// or `None` when the relation can match anywhere (disjoint, minDistance only).
    pub fn envelope(&self) -> Option<[f64; 4]> {
        use geo::BoundingRect;
        let r = self.geometry.bounding_rect()?;
        match self.rel {
            GeoRel::Disjoint | GeoRel::Near { max: None, .. } => None,
            GeoRel::Near { max: Some(m), .. } => {
                let dlat = m / METRES_PER_DEGREE;
                let (lo, hi) = ((r.min().y - dlat).max(-90.0), (r.max().y + dlat).min(90.0));
                // Longitude degrees are shortest at the latitude farthest from the equator.
                let far = lo.abs().max(hi.abs());
                let dlon = m / (METRES_PER_DEGREE * far.to_radians().cos().max(1e-9));
                if far >= 89.9 || dlon >= 180.0 {
                    // A pole within reach: every longitude.
                    return Some([-180.0, lo, 180.0, hi]);
                }
                Some([r.min().x - dlon, lo, r.max().x + dlon, hi])
            }
            _ => Some([r.min().x, r.min().y, r.max().x, r.max().y]),
        }
    }

    /// Whether any instance of the entity's GeoProperty satisfies the relation.
    pub fn matches(&self, e: &Entity) -> bool {
        let Some(instances) = e.attrs.get(&self.property) else { return false };
        instances
            .iter()
            .filter(|a| a.kind == AttrKind::GeoProperty)
            .filter_map(|a| to_geometry(&a.value).ok())
            .any(|g| self.holds(&g))
    }

    fn holds(&self, g: &Geometry<f64>) -> bool {
        match self.rel {
            GeoRel::Near { max, min } => {
                let Geometry::Point(q) = self.geometry else { return false };
                let d = distance_m(g, q);
                max.is_none_or(|m| d <= m) && min.is_none_or(|m| d >= m)
            }
            GeoRel::Within => g.relate(&self.geometry).is_within(),
            GeoRel::Contains => g.relate(&self.geometry).is_contains(),
            GeoRel::Intersects => g.relate(&self.geometry).is_intersects(),
            GeoRel::Equals => g.relate(&self.geometry).is_equal_topo(),
            GeoRel::Disjoint => g.relate(&self.geometry).is_disjoint(),
            GeoRel::Overlaps => g.relate(&self.geometry).is_overlaps(),
        }
    }
}

/// Great-circle distance in metres from `q` to the closest point of `g`.
pub fn distance_m(g: &Geometry<f64>, q: Point<f64>) -> f64 {
    if let Geometry::Point(p) = g {
        return Haversine.distance(*p, q);
    }
    match g.closest_point(&q) {
        Closest::Intersection(_) => 0.0,
        Closest::SinglePoint(p) => Haversine.distance(p, q),
        Closest::Indeterminate => f64::INFINITY,
    }
}

/// Converts a GeoJSON geometry to a `geo` geometry.
pub fn to_geometry(v: &Value) -> Result<Geometry<f64>, GeoError> {
    let bad = |why: &str| GeoError(format!("invalid geometry: {why}"));
    let ty = v.get("type").and_then(Value::as_str).ok_or_else(|| bad("no type"))?;
    let c = v.get("coordinates").ok_or_else(|| bad("no coordinates"))?;
    fn pos(v: &Value) -> Option<Coord<f64>> {
        let a = v.as_array()?;
        if a.len() < 2 {
            return None;
        }
        Some(Coord { x: a[0].as_f64()?, y: a[1].as_f64()? })
    }
    fn line(v: &Value) -> Option<LineString<f64>> {
        v.as_array()?.iter().map(pos).collect::<Option<Vec<_>>>().map(LineString::new)
    }
    /// A polygon whose every ring is a valid linear ring as written: `Polygon::new` would close
    /// an open ring silently, so rings are checked before it sees them.
    fn poly(v: &Value) -> Option<Polygon<f64>> {
        let rings = v.as_array()?.iter().map(line).collect::<Option<Vec<_>>>()?;
        let valid = |r: &LineString<f64>| {
            let points: Vec<(f64, f64)> = r.0.iter().map(|c| (c.x, c.y)).collect();
            haskap_model::validate::ring_is_valid(&points)
        };
        if !rings.iter().all(valid) {
            return None;
        }
        let mut rings = rings.into_iter();
        let outer = rings.next()?;
        Some(Polygon::new(outer, rings.collect()))
    }
    let g = match ty {
        "Point" => pos(c).map(|p| Geometry::Point(Point(p))),
        "MultiPoint" => c
            .as_array()
            .filter(|a| !a.is_empty())
            .and_then(|a| a.iter().map(|p| pos(p).map(Point)).collect::<Option<Vec<_>>>())
            .map(|p| Geometry::MultiPoint(MultiPoint(p))),
        "LineString" => line(c).filter(|l| l.0.len() >= 2).map(Geometry::LineString),
        "MultiLineString" => c
            .as_array()
            .filter(|a| !a.is_empty())
            .and_then(|a| a.iter().map(|l| line(l).filter(|l| l.0.len() >= 2)).collect::<Option<Vec<_>>>())
            .map(|l| Geometry::MultiLineString(MultiLineString(l))),
        "Polygon" => poly(c).map(Geometry::Polygon),
        "MultiPolygon" => c
            .as_array()
            .filter(|a| !a.is_empty())
            .and_then(|a| a.iter().map(poly).collect::<Option<Vec<_>>>())
            .map(|p| Geometry::MultiPolygon(MultiPolygon(p))),
        other => return Err(bad(&format!("unsupported type {other:?}"))),
    };
    let g = g.ok_or_else(|| bad(&format!("coordinates do not form a {ty}")))?;
    use geo::BoundingRect;
    if let Some(r) = g.bounding_rect()
        && (r.min().x < -180.0 || r.max().x > 180.0 || r.min().y < -90.0 || r.max().y > 90.0)
    {
        return Err(bad("longitude must be within ±180 and latitude within ±90"));
    }
    Ok(g)
}

#[cfg(test)]
mod tests {

    /// Regression: the index box was a little smaller than the sphere distances are measured on,
    /// so an entity 999.6 m away was not found within 1,000 m; near a pole it must span every
    /// longitude.
    #[test]
    fn near_boxes_hold_every_point_within_reach() {
        let q =
            GeoQuery::new("near;maxDistance==1000", "Point", &serde_json::json!([139.0, 35.0]), "l".into()).unwrap();
        let b = q.envelope().unwrap();
        let p = Point::new(139.0, 35.00899);
        assert!(distance_m(&Geometry::Point(p), Point::new(139.0, 35.0)) < 1000.0);
        assert!(b[1] <= p.y() && p.y() <= b[3] && b[0] <= p.x() && p.x() <= b[2], "{b:?}");
        let polar =
            GeoQuery::new("near;maxDistance==2000", "Point", &serde_json::json!([10.0, 89.995]), "l".into()).unwrap();
        assert_eq!(polar.envelope().map(|b| (b[0], b[2])), Some((-180.0, 180.0)));
    }

    use super::*;
    use haskap_model::jsonld::ActiveContext;
    use haskap_model::parse::{Limits, Parser};
    use serde_json::json;

    fn at(lon: f64, lat: f64) -> Entity {
        let core = ActiveContext::core(&json!({"@context": {"@vocab": "urn:v:"}})).unwrap();
        let p = Parser { ctx: &core, now: 0, limits: Limits::default() };
        p.entity(&json!({"id": "urn:x:1", "type": "T", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}})).unwrap()
    }

    fn q(rel: &str, geometry: &str, coords: Value) -> GeoQuery {
        GeoQuery::new(rel, geometry, &coords, "urn:v:location".into()).unwrap()
    }

    #[test]
    fn near_uses_metres_on_the_sphere() {
        // Tomakomai city hall and a point ~1.1 km north of it.
        let hall = at(141.6036, 42.6342);
        let north = q("near;maxDistance==1200", "Point", json!([141.6036, 42.6442]));
        assert!(north.matches(&hall));
        assert!(!q("near;maxDistance==1000", "Point", json!([141.6036, 42.6442])).matches(&hall));
        assert!(q("near;minDistance==1000", "Point", json!([141.6036, 42.6442])).matches(&hall));
        // Across the antimeridian: 179.99 and -179.99 are ~1.6 km apart at the equator.
        assert!(q("near;maxDistance==3000", "Point", json!([-179.99, 0.0])).matches(&at(179.99, 0.0)));
        let env = north.envelope().unwrap();
        assert!(env[0] < 141.6036 && env[2] > 141.6036 && env[1] < 42.6342);
    }

    #[test]
    fn relations() {
        let square = json!([[[141.0, 42.0], [142.0, 42.0], [142.0, 43.0], [141.0, 43.0], [141.0, 42.0]]]);
        let inside = at(141.6, 42.6);
        let outside = at(140.0, 42.6);
        assert!(q("within", "Polygon", square.clone()).matches(&inside));
        assert!(!q("within", "Polygon", square.clone()).matches(&outside));
        assert!(q("intersects", "Polygon", square.clone()).matches(&inside));
        assert!(q("disjoint", "Polygon", square.clone()).matches(&outside));
        assert!(q("equals", "Point", json!([141.6, 42.6])).matches(&inside));
        assert!(!q("contains", "Polygon", square).matches(&inside));
    }

    #[test]
    fn bad_input() {
        assert!(GeoRel::parse("nearby").is_err());
        assert!(GeoRel::parse("near").is_err());
        assert!(GeoRel::parse("near;maxDistance==-1").is_err());
        assert!(GeoRel::parse("within;maxDistance==1").is_err());
        assert!(
            GeoQuery::new("near;maxDistance==1", "Polygon", &json!([[[0, 0], [1, 0], [1, 1], [0, 0]]]), "x".into())
                .is_err()
        );
        assert!(GeoQuery::new("within", "Polygon", &json!([[[0, 0], [1, 0]]]), "x".into()).is_err());
        // Regression (issue 19): unclosed and degenerate polygons were accepted (an open ring was
        // closed silently).
        for coords in [
            json!([[[0, 0], [1, 0], [1, 1]]]),
            json!([[[0, 0], [1, 0], [1, 1], [0, 1]]]),
            json!([[[0, 0], [1, 1], [2, 2], [0, 0]]]),
            json!([[[0, 0], [1, 0], [0, 0]]]),
            json!([[[0, 0], [2, 0], [2, 2], [0, 0]], [[1, 1], [1, 1], [1, 1], [1, 1]]]),
        ] {
            assert!(GeoQuery::new("within", "Polygon", &coords, "x".into()).is_err(), "{coords}");
            assert!(GeoQuery::new("within", "MultiPolygon", &json!([coords]), "x".into()).is_err(), "{coords}");
        }
        assert!(GeoQuery::new("intersects", "MultiPolygon", &json!([]), "x".into()).is_err());
        assert!(GeoQuery::new("intersects", "MultiLineString", &json!([[[0, 0]]]), "x".into()).is_err());
        assert!(GeoQuery::new("within", "Polygon", &json!([[[0, 0], [1, 0], [1, 1], [0, 0]]]), "x".into()).is_ok());
        assert!(GeoQuery::new("within", "Point", &json!([500, 0]), "x".into()).is_err());
        assert!(GeoQuery::new("within", "Circle", &json!([0, 0]), "x".into()).is_err());
    }
}
