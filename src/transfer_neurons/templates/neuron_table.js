const table = document.getElementById('neurons');
table.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
  const up = th.dataset.dir !== 'up';
  table.querySelectorAll('th').forEach(h => delete h.dataset.dir);
  th.dataset.dir = up ? 'up' : 'down';
  const key = row => { const v = row.cells[col].dataset.v;
    return v === undefined ? row.cells[col].textContent : v === '' ? null : Number(v); };
  [...table.tBodies[0].rows].sort((a, b) => { const x = key(a), y = key(b);
    if (x === null || y === null) return (x === null) - (y === null);
    return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); }).forEach(r => table.tBodies[0].appendChild(r));
}));
document.getElementById('filter').addEventListener('input', e => { const q = e.target.value.toLowerCase();
  for (const row of table.tBodies[0].rows) row.hidden = !row.textContent.toLowerCase().includes(q); });
