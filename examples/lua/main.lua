-- Counts the words of the request and lists the three most frequent.
function handle(request)
  local counts, total = {}, 0
  for word in request:lower():gmatch("%a+") do
    counts[word] = (counts[word] or 0) + 1
    total = total + 1
  end
  local words = {}
  for w in pairs(counts) do words[#words + 1] = w end
  table.sort(words, function(a, b)
    if counts[a] ~= counts[b] then return counts[a] > counts[b] end
    return a < b
  end)
  local lines = { string.format("%d words, %d distinct", total, #words) }
  for i = 1, math.min(3, #words) do
    lines[#lines + 1] = string.format("  %-12s %d", words[i], counts[words[i]])
  end
  return table.concat(lines, "\n") .. "\n"
end
