#!/usr/bin/env python3
# Usage: near-global-items.py OUT_DIR WIDE SMALL -- writes OUT_DIR/items/*.stac.json and OUT_DIR/inventory.csv
# (bucket "src"): WIDE rectangles of 355 x ~160 degrees (near-global, one year) and SMALL 1-degree scenes.
# Near-global items (Sentinel-5P-like wide footprints) plus ordinary scenes, for the memory run.
import json, os, sys, random
out = sys.argv[1]; wide = int(sys.argv[2]); small = int(sys.argv[3])
os.makedirs(f"{out}/items", exist_ok=True)
rows = ["bucket,key,last_modified_date"]
random.seed(7)
assets = {f"b{k}": {"href": f"s3://bucket/some/long/prefix/scene/B{k:02d}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"], "raster:bands": [{"scale": 2.75e-05, "offset": -0.2, "nodata": 0}]} for k in range(12)}
def ring(w, s, e, n):
    # Positions every 60 degrees along the long sides, so every reading takes the rectangle as drawn.
    k = max(1, int((e - w) // 60) + 1)
    south = [[w + (e - w) * j / k, s] for j in range(k + 1)]
    north = [[e - (e - w) * j / k, n] for j in range(k + 1)]
    return south + north + [[w, s]]
def item(i, w, s, e, n):
    return {"type": "Feature", "stac_version": "1.0.0", "id": f"item-{i:05d}", "collection": "mem",
            "bbox": [w, s, e, n],
            "geometry": {"type": "Polygon", "coordinates": [ring(w, s, e, n)]},
            "properties": {"datetime": "2021-06-01T00:00:00Z", "platform": "S5P", "updated": "2021-06-02T00:00:00Z",
                           "description": "x" * 400},
            "links": [{"rel": "self", "href": f"https://example.com/items/{i}"}], "assets": assets}
for i in range(wide + small):
    if i < wide:
        w = -179.0 + (i % 5) * 0.1
        it = item(i, w, -80.0 + i * 0.5, w + 355.0, 80.0 - i * 0.5)
    else:
        lon, lat = random.uniform(-170, 170), random.uniform(-70, 70)
        it = item(i, lon, lat, lon + 1.0, lat + 1.0)
    key = f"items/{i:05d}.stac.json"
    open(f"{out}/{key}", "w").write(json.dumps(it))
    rows.append(f"src,{key},2021-06-02T00:00:00Z")
open(f"{out}/inventory.csv", "w").write("\n".join(rows) + "\n")
