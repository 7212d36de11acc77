"""The Kanpur junctions named for the first deployment (BRIEF section 1) and a
schematic layout for the map when no coordinates are configured."""

import math

KANPUR_JUNCTIONS = (
    "Ghantaghar Square", "Gaushala Second Square", "Bagiya Crossing", "IIT Gate Tiraha", "Rocket Tiraha",
    "Bekarganj Square", "Baghi Chowk Tiraha", "Gopal Tiraha", "Fire Service (Fazalganj) Tiraha",
    "Bhatia Tiraha", "Lenin Park Square", "Sangeet Talkies Tiraha", "Chandrika Devi Mandir Square",
    "Bansmandi Square", "Pirod Tiraha", "Rambagh Square", "Ashok Nagar Square", "Swaroop Nagar Square",
    "Rajiv Petrol Pump Square", "Sales Tax Square", "Mainavati Marg Tiraha", "Singhpur Turn",
    "Silverton Tiraha", "Kabaddi Square", "Nahariya Square", "MG College Square", "IMA Tiraha",
    "Hanuman Mandir / Trimurti Mandir Turn Square", "Sainik Square", "Pashupati Nagar Square",
    "Machrali Gate Tiraha", "Keshav Nagar Square", "Gaushala First Square", "Military Camp Square",
    "Khoya Mandi Tiraha", "DBS Tiraha", "Nandlal Square", "CTI Tiraha", "Janta Nagar Tiraha",
    "Four Pillar Square", "MIG Tiraha", "Shanidev Mandir Tiraha", "Salt Factory Square",
    "Vijay Nagar Fruit Market Square", "Shastri Nagar Galla Mandi Square", "Neerjheer Square",
    "Pandunagar Square",
)

# Map canvas in SVG user units; the browser scales it to the window.
MAP_WIDTH = 1000
MAP_HEIGHT = 700
_MARGIN = 60
# Room a label needs on the schematic map, in SVG units.
_LABEL_WIDTH = 150


def schematic_layout(names, width=MAP_WIDTH, height=MAP_HEIGHT):
    """Place names on a grid, row by row, in the order given: {name: (x, y)}.
    Not geography: a stable arrangement an operator learns by heart. Columns
    are kept wide enough for a junction's name (about 150 units), and every
    other column is shifted down half a row so neighbouring labels never
    touch."""
    names = list(names)
    if not names:
        return {}
    cols = max(1, min(math.ceil(math.sqrt(len(names) * width / height / 2)) + 1,
                      int((width - 2 * _MARGIN) // _LABEL_WIDTH) + 1))
    rows = math.ceil(len(names) / cols)
    dx = (width - 2 * _MARGIN) / (cols - 1) if cols > 1 else 0
    dy = (height - 2 * _MARGIN) / rows if rows > 1 else 0
    out = {}
    for i, name in enumerate(names):
        r, c = divmod(i, cols)
        y = _MARGIN + r * dy + (dy / 2 if c % 2 else 0)
        out[name] = (round(_MARGIN + c * dx, 1), round(y, 1))
    return out


def project(coords, width=MAP_WIDTH, height=MAP_HEIGHT):
    """Project {name: (lat, lon)} into the canvas, north up, keeping the aspect
    ratio (equirectangular: fine across one city)."""
    if not coords:
        return {}
    lats = [p[0] for p in coords.values()]
    lons = [p[1] for p in coords.values()]
    mid_lat = math.radians((min(lats) + max(lats)) / 2)
    xs = {n: lon * math.cos(mid_lat) for n, (lat, lon) in coords.items()}
    span_x = (max(xs.values()) - min(xs.values())) or 1e-9
    span_y = (max(lats) - min(lats)) or 1e-9
    scale = min((width - 2 * _MARGIN) / span_x, (height - 2 * _MARGIN) / span_y)
    min_x = min(xs.values())
    max_lat = max(lats)
    return {n: (round(_MARGIN + (xs[n] - min_x) * scale, 1), round(_MARGIN + (max_lat - lat) * scale, 1))
            for n, (lat, lon) in coords.items()}


def layout(names, coords):
    """Positions for every junction name: projected from coordinates when every
    name has them, else schematic (mixing the two would mislead)."""
    names = list(dict.fromkeys(names))
    if names and all(n in coords for n in names):
        return {"mode": "coordinates", "points": project({n: coords[n] for n in names})}
    return {"mode": "schematic", "points": schematic_layout(names)}
