(function () {
  function graphs(sel) { return Array.prototype.slice.call(document.querySelectorAll(sel)); }
  function log10(z) {
    return z.map(function (row) { return row.map(function (v) {
      return (v === null || v <= 0) ? null : Math.log10(v); }); });
  }
  var logScale = false;
  var button = document.getElementById('ls-log-toggle');
  if (button) button.addEventListener('click', function () {
    logScale = !logScale;
    graphs('.ls-3d .js-plotly-plot').forEach(function (gd) {
      if (!gd._lsLinear) gd._lsLinear = gd.data.map(function (t) {
        return {z: t.z, cmin: t.cmin, cmax: t.cmax}; });
      var lin = gd._lsLinear;
      var z = lin.map(function (t) { return logScale ? log10(t.z) : t.z; });
      var cmin = lin.map(function (t) { return logScale ? (t.cmin > 0 ? Math.log10(t.cmin) : null) : t.cmin; });
      var cmax = lin.map(function (t) { return logScale ? (t.cmax > 0 ? Math.log10(t.cmax) : null) : t.cmax; });
      var meta = gd.layout.meta || {};
      var label = meta.zlabel || 'z';
      var axis = {'scene.zaxis.title.text': logScale ? 'log10 ' + label : label};
      if (meta.zrange) axis['scene.zaxis.range'] = logScale ?
        [Math.log10(Math.max(meta.zrange[0], 1e-12)), Math.log10(Math.max(meta.zrange[1], 1e-12))] : meta.zrange;
      var bar = lin.map(function () { return logScale ? 'log10 ' + label : label; });
      Plotly.restyle(gd, {z: z, cmin: cmin, cmax: cmax, 'colorbar.title.text': bar});
      Plotly.relayout(gd, axis);
    });
    button.textContent = logScale ? 'z: log10 (switch to linear)' : 'z: linear (switch to log10)';
    document.body.setAttribute('data-zscale', logScale ? 'log' : 'linear');
  });
  // a loss starts on log10 z, as the matplotlib 3D views (the paper's choice)
  if (button && document.body.getAttribute('data-zscale-default') === 'log') button.click();
  var linked = graphs('.ls-linked .js-plotly-plot');
  var syncing = false;
  linked.forEach(function (gd) {
    gd.on('plotly_relayout', function (ev) {
      if (syncing || !ev || !ev['scene.camera']) return;
      syncing = true;
      var cam = JSON.parse(JSON.stringify(ev['scene.camera']));
      var jobs = linked.filter(function (o) { return o !== gd; }).map(function (o) {
        return Plotly.relayout(o, {'scene.camera': cam}); });
      Promise.all(jobs).then(function () { syncing = false; }, function () { syncing = false; });
    });
  });
})();
