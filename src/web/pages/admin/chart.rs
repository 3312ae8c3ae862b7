//! The dashboard's stacked bar chart of 401s and 403s: the geometry is computed here, the
//! SVG markup is in `templates/admin/_chart.html` (no script, no CDN). Colours come from
//! the stylesheet's classes, so the page's CSP needs no inline styles.

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;
/// About this many time labels under the bars.
const LABELS: usize = 6;

/// A horizontal grid line and its value.
pub struct Tick {
    pub y: String,
    pub label_y: String,
    pub value: i64,
}

/// One part of a stacked bar.
pub struct Segment {
    pub y: String,
    pub height: String,
}

/// One bucket: its 401 part (bottom), 403 part (on top) and, for some, a time label.
pub struct Bar {
    pub x: String,
    pub unauthorized: Option<Segment>,
    pub forbidden: Option<Segment>,
    pub label: Option<(String, String)>,
}

pub struct Chart {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub bar_width: String,
    pub tick_x: String,
    pub label_y: String,
    pub total_401: i64,
    pub total_403: i64,
    pub ticks: Vec<Tick>,
    pub bars: Vec<Bar>,
}

fn px(value: f64) -> String {
    format!("{value:.1}")
}

impl Chart {
    /// The chart of `buckets`: (label, 401s, 403s), oldest first.
    pub fn new(buckets: &[(String, i64, i64)]) -> Chart {
        let max = buckets
            .iter()
            .map(|(_, u, f)| u + f)
            .max()
            .unwrap_or(0)
            .max(1);
        let plot_h = HEIGHT - BOTTOM - TOP;
        let slot = (WIDTH - LEFT - 8.0) / buckets.len().max(1) as f64;
        let bar = (slot * 0.7).max(1.0);
        let y = |v: i64| TOP + plot_h - (v as f64 / max as f64) * plot_h;
        let ticks = [0, max / 2, max]
            .into_iter()
            .map(|value| Tick {
                y: px(y(value)),
                label_y: px(y(value) + 4.0),
                value,
            })
            .collect();
        let label_every = (buckets.len() / LABELS).max(1);
        let bars = buckets
            .iter()
            .enumerate()
            .map(|(i, (label, unauthorized, forbidden))| {
                let x = LEFT + i as f64 * slot + (slot - bar) / 2.0;
                let y401 = y(*unauthorized);
                let y403 = y(unauthorized + forbidden);
                Bar {
                    x: px(x),
                    unauthorized: (*unauthorized > 0).then(|| Segment {
                        y: px(y401),
                        height: px(TOP + plot_h - y401),
                    }),
                    forbidden: (*forbidden > 0).then(|| Segment {
                        y: px(y403),
                        height: px(y401 - y403),
                    }),
                    label: (i % label_every == 0).then(|| (px(x + bar / 2.0), label.clone())),
                }
            })
            .collect();
        Chart {
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            bar_width: px(bar),
            tick_x: px(LEFT - 6.0),
            label_y: px(HEIGHT - 8.0),
            total_401: buckets.iter().map(|b| b.1).sum(),
            total_403: buckets.iter().map(|b| b.2).sum(),
            ticks,
            bars,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Chart;

    #[test]
    fn bars_stack_403s_on_401s_and_scale_to_the_largest() {
        let chart = Chart::new(&[("00:00".into(), 3, 1), ("01:00".into(), 0, 0)]);
        let first = &chart.bars[0];
        let (u, f) = (
            first.unauthorized.as_ref().expect("401 part"),
            first.forbidden.as_ref().expect("403 part"),
        );
        // The full bar reaches the top of the plot (y = 12), the 401 part is 3/4 of it.
        assert_eq!((f.y.as_str(), u.height.as_str()), ("12.0", "135.0"));
        assert!(chart.bars[1].unauthorized.is_none() && chart.bars[1].forbidden.is_none());
        assert_eq!((chart.total_401, chart.total_403), (3, 1));
        assert_eq!(chart.ticks.last().map(|t| t.value), Some(4));
    }
}
