// The analytics page's charts, drawn with Chart.js from the figures the server rendered.
(function () {
  "use strict";
  const figures = JSON.parse(document.getElementById("analytics-figures").textContent);
  const TIERS = ["cheap", "capable", "premium", "(none)"];
  const COLOURS = ["#417690", "#79aec8", "#f5a623", "#ba2121", "#2e7d32", "#8e24aa", "#607d8b"];

  function chart(id, type, labels, datasets, options) {
    return new Chart(document.getElementById(id), {
      type: type,
      data: {
        labels: labels,
        datasets: datasets.map((dataset, index) =>
          Object.assign({ backgroundColor: COLOURS[index % COLOURS.length], borderColor: COLOURS[index % COLOURS.length] }, dataset)),
      },
      options: Object.assign({ animation: false, responsive: true, maintainAspectRatio: true }, options || {}),
    });
  }

  function byTier(rows, field) {
    const days = [...new Set(rows.map((row) => row.day))];
    const tiers = TIERS.filter((tier) => rows.some((row) => row.tier === tier));
    const datasets = tiers.map((tier) => ({
      label: tier,
      data: days.map((day) => (rows.find((row) => row.day === day && row.tier === tier) || {})[field] || 0),
    }));
    return [days, datasets];
  }

  const percent = { scales: { y: { min: 0, max: 100, ticks: { callback: (value) => value + "%" } } } };
  const stacked = { scales: { x: { stacked: true }, y: { stacked: true } } };

  chart("chart-success", "bar", figures.success_by_agent.map((row) => row.agent),
    [{ label: "success rate", data: figures.success_by_agent.map((row) => Math.round(row.rate * 1000) / 10) }], percent);
  chart("chart-activity", "line", figures.activity.map((row) => row.day), [
    { label: "runs", data: figures.activity.map((row) => row.runs) },
    { label: "failed", data: figures.activity.map((row) => row.failed) },
  ]);
  chart("chart-items", "bar", figures.activity.map((row) => row.day), [
    { label: "succeeded", data: figures.activity.map((row) => row.items_succeeded) },
    { label: "failed", data: figures.activity.map((row) => row.items_failed) },
  ], stacked);
  chart("chart-durations", "bar", figures.durations.labels, [{ label: "runs", data: figures.durations.runs }]);
  chart("chart-jobs", "doughnut", figures.job_types.map((row) => row.job_type),
    [{ data: figures.job_types.map((row) => row.runs), backgroundColor: COLOURS }]);
  const [costDays, costSets] = byTier(figures.cost_by_day, "cost");
  chart("chart-cost", "bar", costDays, costSets, stacked);
  const [tokenDays, tokenSets] = byTier(figures.cost_by_day, "tokens");
  chart("chart-tokens", "bar", tokenDays, tokenSets, stacked);
  chart("chart-models", "bar", figures.cost_by_model.map((row) => row.model),
    [{ label: "cost $", data: figures.cost_by_model.map((row) => row.cost) }], { indexAxis: "y" });
  chart("chart-quality", "bar", figures.quality_by_stage.map((row) => row.stage),
    [{ label: "average quality", data: figures.quality_by_stage.map((row) => row.avg) }], { scales: { y: { min: 0, max: 1 } } });
  document.body.dataset.chartsDrawn = String(Object.keys(Chart.instances).length);
})();
