// Phones: each data table row becomes a small card, every cell labelled with its column heading,
// so no table needs sideways scrolling at 390 px (static/css/prm.css, `.data-table--stacked`).
// Without this script the tables keep their scrolling wrapper. Roles keep the table semantics that
// `display: block` would drop for screen readers.
(function () {
  "use strict";
  function label(table) {
    var headRow = table.tHead && table.tHead.rows[table.tHead.rows.length - 1];
    if (!headRow) return;
    var headings = [];
    for (var i = 0; i < headRow.cells.length; i++) {
      var span = headRow.cells[i].colSpan || 1;
      for (var s = 0; s < span; s++) headings.push(headRow.cells[i].textContent.replace(/[↑↓]/g, "").trim());
    }
    table.setAttribute("role", "table");
    var sections = [table.tHead].concat([].slice.call(table.tBodies)).concat(table.tFoot ? [table.tFoot] : []);
    sections.forEach(function (section) {
      section.setAttribute("role", "rowgroup");
      [].forEach.call(section.rows, function (row) {
        row.setAttribute("role", "row");
        var column = 0;
        [].forEach.call(row.cells, function (cell) {
          var heading = section === table.tHead ? "columnheader" : cell.tagName === "TH" ? "rowheader" : "cell";
          cell.setAttribute("role", heading);
          if (section !== table.tHead && cell.colSpan === 1 && headings[column]) cell.setAttribute("data-label", headings[column]);
          column += cell.colSpan || 1;
        });
      });
    });
    table.classList.add("data-table--stacked");
  }
  function run() { [].forEach.call(document.querySelectorAll("table.data-table"), label); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run); else run();
})();
