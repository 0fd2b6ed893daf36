package categorizer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// UT1Aliases are the category names UT1 publishes as symlinks to another
// directory; ParseUT1 resolves them so configs may use either name.
var UT1Aliases = map[string]string{
	"ads":        "publicite",
	"aggressive": "agressif",
	"drugs":      "drogue",
	"mail":       "forums",
	"porn":       "adult",
	"proxy":      "redirector",
	"violence":   "agressif",
}

// ut1Files are the per-category files read, with their format; upstream
// splits very large domain lists into domains.0, domains.1, ...
var ut1Files = []struct {
	prefix string
	format Format
}{{"domains", FormatDomains}, {"urls", FormatURLs}}

// ParseUT1 reads a UT1-style directory (one sub-directory per category,
// each with "domains" and/or "urls", optionally split as "domains.0",
// "domains.1", ...). mapping maps a directory name (or a UT1 alias) to the
// category its entries get; nil maps every directory to its own name.
// Directories named in mapping but missing are reported as an error;
// "expressions" files (regular expressions) are not applied and counted
// as skipped lines.
func ParseUT1(fsys fs.FS, name string, mapping map[string]string, emit func(Entry)) (ParseStats, error) {
	var total ParseStats
	dirs := map[string]string{} // directory → category
	if mapping == nil {
		ents, err := fs.ReadDir(fsys, ".")
		if err != nil {
			return total, fmt.Errorf("categorizer: ut1 %s: %w", name, err)
		}
		for _, e := range ents {
			if e.IsDir() {
				dirs[e.Name()] = e.Name()
			}
		}
	} else {
		var errs []error
		for dir, cat := range mapping {
			real := dir
			if a, ok := UT1Aliases[dir]; ok {
				real = a
			}
			if st, err := fs.Stat(fsys, real); err != nil || !st.IsDir() {
				errs = append(errs, fmt.Errorf("categorizer: ut1 %s: category directory %q not found", name, dir))
				continue
			}
			dirs[real] = cat
		}
		if err := errors.Join(errs...); err != nil {
			return total, err
		}
	}
	order := make([]string, 0, len(dirs))
	for d := range dirs {
		order = append(order, d)
	}
	sort.Strings(order)
	for _, dir := range order {
		ents, err := fs.ReadDir(fsys, dir)
		if err != nil {
			return total, fmt.Errorf("categorizer: ut1 %s: %w", name, err)
		}
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			fn := e.Name()
			if strings.Contains(fn, "expression") {
				n, err := countLines(fsys, path.Join(dir, fn))
				if err != nil {
					return total, fmt.Errorf("categorizer: ut1 %s: %w", name, err)
				}
				total.Lines += n
				total.Skipped += n
				continue
			}
			for _, f := range ut1Files {
				if fn != f.prefix && !strings.HasPrefix(fn, f.prefix+".") {
					continue
				}
				st, err := parseFSFile(fsys, path.Join(dir, fn), f.format, dirs[dir], emit)
				total.Add(st)
				if err != nil {
					return total, fmt.Errorf("categorizer: ut1 %s: %w", name, err)
				}
			}
		}
	}
	return total, nil
}

// ParseUT1Dir is ParseUT1 on a directory of the local file system.
func ParseUT1Dir(dir string, mapping map[string]string, emit func(Entry)) (ParseStats, error) {
	return ParseUT1(os.DirFS(dir), dir, mapping, emit)
}

func parseFSFile(fsys fs.FS, file string, f Format, category string, emit func(Entry)) (ParseStats, error) {
	fh, err := fsys.Open(file)
	if err != nil {
		return ParseStats{}, err
	}
	defer fh.Close()
	p := &lineParser{file: file, emit: emit, category: category}
	fn := (*lineParser).domains
	if f == FormatURLs {
		fn = (*lineParser).urls
	}
	err = p.run(fh, fn)
	return p.stats, err
}

func countLines(fsys fs.FS, file string) (int, error) {
	b, err := fs.ReadFile(fsys, file)
	if err != nil {
		return 0, err
	}
	n := strings.Count(string(b), "\n")
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n++
	}
	return n, nil
}
