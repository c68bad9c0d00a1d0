// Draws every [data-chart] element with plotly.js (served from the plotly PyPI package).
// The numbers stay in the table under each chart for readers without JS.
(function () {
  "use strict";
  var palette = ["#1f5eff", "#17a673", "#f29d38", "#9b5de5", "#e4572e", "#4c6a8b"];
  function draw(el) {
    var spec = JSON.parse(document.getElementById(el.dataset.chart).textContent);
    var traces = spec.series.map(function (s, i) {
      var line = s.type === "line";
      return {
        type: line ? "scatter" : "bar",
        mode: line ? "lines+markers" : undefined,
        name: s.name,
        x: spec.labels,
        y: s.values,
        marker: { color: palette[i % palette.length] },
        line: line ? { color: palette[i % palette.length], width: 3 } : undefined,
        hovertemplate: "%{x}<br>" + s.name + ": %{y:,.2f}<extra></extra>",
      };
    });
    var layout = {
      barmode: spec.stacked ? "stack" : "group",
      margin: { l: 60, r: 10, t: 30, b: 40 },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      yaxis: { tickformat: spec.value_kind === "money" ? "~s" : "d", rangemode: "tozero" },
      xaxis: { type: "category", automargin: true },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "system-ui, sans-serif", size: 12 },
    };
    window.Plotly.newPlot(el, traces, layout, { responsive: true, displaylogo: false, displayModeBar: false })
      .then(function () { el.dataset.rendered = "true"; });
    if (spec.links) {
      // A point opens the rows behind its value (the drill-down page).
      el.on("plotly_click", function (event) {
        var point = event.points && event.points[0];
        var url = point && (spec.links[point.curveNumber] || [])[point.pointIndex];
        if (url) { window.location.href = url; }
      });
    }
  }
  function start() {
    if (!window.Plotly) { return; }
    document.querySelectorAll("[data-chart]").forEach(draw);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
