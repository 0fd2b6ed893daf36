package categorizer

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// fetched describes content downloaded or copied into the cache.
type fetched struct {
	notModified  bool
	etag         string
	lastModified string
	sha256       string
	bytes        int64
}

// progressReader reports how much of a download was read.
type progressReader struct {
	r        io.Reader
	done     int64
	total    int64
	reported int64
	fn       func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.fn != nil && (p.done-p.reported >= 256<<10 || err == io.EOF) {
		p.reported = p.done
		p.fn(p.done, p.total)
	}
	return n, err
}

// errTooLarge is returned when a download exceeds Config.MaxBytes.
var errTooLarge = errors.New("download larger than max_bytes")

// localPath returns the file path of a file source.
func localPath(source string) string { return strings.TrimPrefix(source, "file://") }

func isHTTP(source string) bool {
	return strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://")
}

// fetchTo copies a feed's source into dst (a file; for ut1 a directory
// holding only the mapped categories). prev holds the validators of the
// content in use for conditional HTTP requests.
func (s *Syncer) fetchTo(ctx context.Context, f FeedConfig, dst string, prev FeedStatus) (fetched, error) {
	var (
		body io.ReadCloser
		res  fetched
		size int64 = -1
	)
	switch {
	case isHTTP(f.Source):
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.Source, nil)
		if err != nil {
			return res, err
		}
		req.Header.Set("User-Agent", s.cfg.Config.UserAgent)
		if prev.ETag != "" {
			req.Header.Set("If-None-Match", prev.ETag)
		}
		if prev.LastModified != "" {
			req.Header.Set("If-Modified-Since", prev.LastModified)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return res, err
		}
		if resp.StatusCode == http.StatusNotModified {
			resp.Body.Close()
			res.notModified = true
			return res, nil
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return res, fmt.Errorf("GET %s: %s", f.Source, resp.Status)
		}
		res.etag = resp.Header.Get("ETag")
		res.lastModified = resp.Header.Get("Last-Modified")
		body, size = resp.Body, resp.ContentLength
	case strings.HasPrefix(f.Source, bundledPrefix):
		rc, err := openBundled(f.Source)
		if err != nil {
			return res, err
		}
		body = rc
	default:
		p := localPath(f.Source)
		st, err := os.Stat(p)
		if err != nil {
			return res, err
		}
		if st.IsDir() {
			if f.Format != FormatUT1 {
				return res, fmt.Errorf("%s is a directory; only ut1 feeds read directories", p)
			}
			return copyUT1Dir(os.DirFS(p), dst, UT1Mapping(f.Categories))
		}
		fh, err := os.Open(p)
		if err != nil {
			return res, err
		}
		body, size = fh, st.Size()
	}
	defer body.Close()
	pr := &progressReader{r: body, total: size}
	if s.cfg.Progress != nil {
		pr.fn = func(done, total int64) { s.cfg.Progress(f.Name, done, total) }
	}
	limited := &io.LimitedReader{R: pr, N: s.cfg.Config.MaxBytes + 1}
	if f.Format == FormatUT1 {
		out, err := extractUT1(limited, dst, UT1Mapping(f.Categories))
		if limited.N <= 0 {
			return res, errTooLarge
		}
		out.etag, out.lastModified = res.etag, res.lastModified
		return out, err
	}
	fh, err := os.Create(dst)
	if err != nil {
		return res, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(fh, h), limited)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, err
	}
	if limited.N <= 0 {
		return res, errTooLarge
	}
	res.bytes = n
	res.sha256 = hex.EncodeToString(h.Sum(nil))
	return res, nil
}

// ut1Wanted reports whether a path inside a UT1 tree ("<dir>/<file>",
// maybe below a "blacklists/" folder) is a list of a mapped category, and
// returns its place in the copy.
func ut1Wanted(name string, mapping map[string]string) (string, bool) {
	name = strings.TrimPrefix(path.Clean(name), "./")
	parts := strings.Split(name, "/")
	if len(parts) < 2 {
		return "", false
	}
	dir, file := parts[len(parts)-2], parts[len(parts)-1]
	if _, ok := mapping[dir]; !ok {
		found := false
		for alias, real := range UT1Aliases {
			if real == dir {
				if _, ok := mapping[alias]; ok {
					found = true
				}
			}
		}
		if !found {
			return "", false
		}
	}
	for _, f := range ut1Files {
		if file == f.prefix || strings.HasPrefix(file, f.prefix+".") {
			return dir + "/" + file, true
		}
	}
	return "", false
}

// copyUT1Dir copies the mapped categories of a UT1 directory into dst.
func copyUT1Dir(src fs.FS, dst string, mapping map[string]string) (fetched, error) {
	var res fetched
	h := sha256.New()
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, ok := ut1Wanted(p, mapping)
		if !ok {
			return nil
		}
		in, err := src.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		n, err := writeUT1File(dst, rel, in, h)
		res.bytes += n
		return err
	})
	res.sha256 = hex.EncodeToString(h.Sum(nil))
	return res, err
}

// extractUT1 unpacks the mapped categories of a UT1 .tar.gz into dst.
func extractUT1(r io.Reader, dst string, mapping map[string]string) (fetched, error) {
	var res fetched
	br := bufio.NewReader(r)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return res, fmt.Errorf("ut1 archive: %w (want a .tar.gz of the blacklists directory, or a local directory)", err)
	}
	tr := tar.NewReader(zr)
	h := sha256.New()
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, fmt.Errorf("ut1 archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		rel, ok := ut1Wanted(hdr.Name, mapping)
		if !ok {
			continue
		}
		n, err := writeUT1File(dst, rel, tr, h)
		res.bytes += n
		if err != nil {
			return res, err
		}
	}
	res.sha256 = hex.EncodeToString(h.Sum(nil))
	return res, nil
}

func writeUT1File(dst, rel string, r io.Reader, h hash.Hash) (int64, error) {
	p := filepath.Join(dst, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return 0, err
	}
	out, err := os.Create(p)
	if err != nil {
		return 0, err
	}
	io.WriteString(h, rel)
	n, err := io.Copy(io.MultiWriter(out, h), r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// addFeed declares feed f in b and parses its content: from path (the
// cached copy) when set, else straight from a local or bundled source.
func addFeed(b *Builder, f FeedConfig, path string) (ParseStats, error) {
	cats := f.Categories
	if f.Format == FormatUT1 {
		cats = nil // each directory gives its own category
	}
	id, err := b.AddFeed(f.Name, cats, f.Threat)
	if err != nil {
		return ParseStats{}, err
	}
	st, err := parseFeed(f, path, b.Emit(id))
	if err != nil {
		return st, err
	}
	return st, b.err
}

// parseFeed parses a feed's content from path, or from its local or
// bundled source when path is "".
func parseFeed(f FeedConfig, path string, emit func(Entry)) (ParseStats, error) {
	if path == "" {
		if isHTTP(f.Source) {
			return ParseStats{}, fmt.Errorf("categorizer: feed %s: %s must be downloaded first (use the Syncer)", f.Name, f.Source)
		}
		path = localPath(f.Source)
	}
	if f.Format == FormatUT1 {
		st, err := os.Stat(path)
		if err != nil {
			return ParseStats{}, fmt.Errorf("categorizer: feed %s: %w", f.Name, err)
		}
		if !st.IsDir() {
			return ParseStats{}, fmt.Errorf("categorizer: feed %s: %s is not a directory (an archive must go through the Syncer)", f.Name, path)
		}
		stats, err := ParseUT1(os.DirFS(path), f.Name, UT1Mapping(f.Categories), emit)
		if err != nil {
			return stats, fmt.Errorf("categorizer: feed %s: %w", f.Name, err)
		}
		return stats, nil
	}
	var r io.ReadCloser
	var err error
	if strings.HasPrefix(path, bundledPrefix) {
		r, err = openBundled(path)
	} else {
		r, err = os.Open(path)
	}
	if err != nil {
		return ParseStats{}, fmt.Errorf("categorizer: feed %s: %w", f.Name, err)
	}
	defer r.Close()
	st, err := Parse(f.Format, f.Name, r, emit)
	if err != nil {
		return st, fmt.Errorf("categorizer: feed %s: %w", f.Name, err)
	}
	return st, nil
}
