// Draws the dashboard's charts from the JSON the page embeds (#dashboard-data).
// Chart.js is served from this site (vendor/chart.umd.js); the instances are kept on
// window.staffCharts so that a person (or a browser test) can inspect them.
(function () {
  "use strict";
  function draw() {
    var source = document.getElementById("dashboard-data");
    if (!source || typeof Chart === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    var styles = getComputedStyle(document.documentElement);
    var text = styles.getPropertyValue("--body-fg").trim() || "#333";
    Chart.defaults.color = text;
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = true;
    Chart.defaults.aspectRatio = 1.6;
    var palette = ["#417690", "#79aec8", "#e0b03b", "#ba2121", "#5b8c5a", "#8e6c8a", "#c07a3a", "#4f6d7a"];
    var charts = {};
    function make(id, config) {
      var canvas = document.getElementById(id);
      if (canvas) { charts[id] = new Chart(canvas, config); }
    }
    make("chart-per-day", {
      type: "line",
      data: {
        labels: data.days,
        datasets: [
          { label: "Rewards issued", data: data.issued, borderColor: palette[0], backgroundColor: palette[0], yAxisID: "y" },
          { label: "Points redeemed", data: data.points, borderColor: palette[2], backgroundColor: palette[2], yAxisID: "y1" }
        ]
      },
      options: { responsive: true, scales: { y: { beginAtZero: true, position: "left" }, y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } } }
    });
    make("chart-by-type", {
      type: "doughnut",
      data: { labels: data.byType.labels, datasets: [{ label: "Points", data: data.byType.points, backgroundColor: palette }] },
      options: { responsive: true, aspectRatio: 1.6 }
    });
    make("chart-by-reward", {
      type: "bar",
      data: { labels: data.byReward.labels, datasets: [{ label: "Units", data: data.byReward.units, backgroundColor: palette[1] }] },
      options: { responsive: true, indexAxis: "y", scales: { x: { beginAtZero: true } } }
    });
    make("chart-failures", {
      type: "bar",
      data: { labels: data.failures.labels, datasets: [{ label: "Lines", data: data.failures.counts, backgroundColor: palette[3] }] },
      options: { responsive: true, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
    window.staffCharts = charts;
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
