package vod

// AWS Elemental MediaConvert job JSON, read as a Job. docs/mediaconvert.md
// is the user-facing mapping; keep the two in step.
//
// The document is walked as generic JSON, object by object. Every key of
// every object is accounted for in one of four ways:
//
//   - mapped: it sets part of the Job (SegmentLength, Height, Bitrate …);
//   - agrees: its value is what streamd does anyway (InterlaceMode
//     PROGRESSIVE, AfdSignaling NONE …), so nothing is lost;
//   - noted: accepted, but it has no effect here or streamd does it its own
//     way (Destination, Role, encoder tuning knobs, QVBR …) — collected in
//     Job.Notes, which LoadJob prints on stderr;
//   - refused: anything else, including keys this file does not know —
//     collected into one *Error (CodeInvalidJob) that lists them all with
//     their JSON paths.
//
// So a setting is never dropped without a word.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/streamd/streamd/transcode"
)

// Reasons shared by many notes (notes with the same reason under the same
// kind of parent are printed as one line).
const (
	mcNoEffect    = "accepted, no effect in streamd"
	mcTuning      = "encoder tuning, no effect: libx264's preset (from QualityTuningLevel) decides, with keyframes only on the segment grid"
	mcMuxer       = "container/manifest detail, no effect: streamd writes CMAF fMP4 segments with its own HLS and DASH manifests"
	mcDestination = "no effect: the output folder is --out DIR"
	mcDisplay     = "display/timecode detail, no effect"
)

// isMediaConvert tells a MediaConvert document from our own job format:
// ours has only lower-case keys, MediaConvert's are PascalCase.
func isMediaConvert(data []byte) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return false
	}
	for _, k := range []string{"Settings", "OutputGroups", "Job", "JobTemplate"} {
		if _, ok := top[k]; ok {
			return true
		}
	}
	return false
}

type mcNote struct{ parent, field, reason string }

// mcConv collects the problems and notes of one conversion.
type mcConv struct {
	errs  []string
	notes []mcNote
}

func (c *mcConv) fail(path, format string, a ...any) {
	c.errs = append(c.errs, path+": "+fmt.Sprintf(format, a...))
}

func (c *mcConv) note(parent, field, reason string) {
	c.notes = append(c.notes, mcNote{parent, field, reason})
}

func mcJoin(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mcObj is one JSON object being consumed; keys read or dispatched are
// marked used, and rest refuses whatever is left.
type mcObj struct {
	c    *mcConv
	path string
	m    map[string]any
	used map[string]bool
}

func (c *mcConv) object(path string, v any) *mcObj {
	o := &mcObj{c: c, path: path, used: map[string]bool{}}
	if v == nil {
		return o
	}
	m, ok := v.(map[string]any)
	if !ok {
		c.fail(path, "must be a JSON object")
		return o
	}
	o.m = m
	return o
}

func (o *mcObj) has(k string) bool { _, ok := o.m[k]; return ok }

func (o *mcObj) get(k string) (any, bool) {
	v, ok := o.m[k]
	if ok {
		o.used[k] = true
	}
	return v, ok
}

func (o *mcObj) p(k string) string { return mcJoin(o.path, k) }

func (o *mcObj) str(k string) string {
	v, ok := o.get(k)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		o.c.fail(o.p(k), "must be a string")
	}
	return s
}

func (o *mcObj) num(k string) (float64, bool) {
	v, ok := o.get(k)
	if !ok {
		return 0, false
	}
	n, isNum := v.(json.Number)
	f, err := n.Float64()
	if !isNum || err != nil {
		o.c.fail(o.p(k), "must be a number")
		return 0, false
	}
	return f, true
}

// sub is the child object k (empty, with m == nil, when absent).
func (o *mcObj) sub(k string) *mcObj {
	v, _ := o.get(k)
	return o.c.object(o.p(k), v)
}

func (o *mcObj) arr(k string) []any {
	v, ok := o.get(k)
	if !ok {
		return nil
	}
	a, ok := v.([]any)
	if !ok {
		o.c.fail(o.p(k), "must be a JSON array")
	}
	return a
}

// ignore notes each present key as accepted without effect.
func (o *mcObj) ignore(reason string, keys ...string) {
	for _, k := range keys {
		if o.has(k) && !o.used[k] {
			o.used[k] = true
			o.c.note(o.path, k, reason)
		}
	}
}

// agree accepts k silently when its value is one of ok (what streamd does
// anyway); any other value is noted with reason.
func (o *mcObj) agree(k, reason string, ok ...string) {
	if !o.has(k) || o.used[k] {
		return
	}
	v, _ := o.get(k)
	if s, isStr := v.(string); isStr && slices.Contains(ok, s) {
		return
	}
	if n, isNum := v.(json.Number); isNum && slices.Contains(ok, n.String()) {
		return
	}
	o.c.note(o.path, k, fmt.Sprintf("%s: %s", mcValue(v), reason))
}

// agreeOrRefuse is agree with an error for any other value.
func (o *mcObj) agreeOrRefuse(k, reason string, ok ...string) {
	if !o.has(k) || o.used[k] {
		return
	}
	v, _ := o.get(k)
	if s, isStr := v.(string); isStr && slices.Contains(ok, s) {
		return
	}
	o.c.fail(o.p(k), "%v not supported (%s)", mcValue(v), reason)
}

// refuse makes each present key an error.
func (o *mcObj) refuse(reason string, keys ...string) {
	for _, k := range keys {
		if o.has(k) && !o.used[k] {
			o.used[k] = true
			o.c.fail(o.p(k), "not supported (%s)", reason)
		}
	}
}

// rest refuses every key not yet accounted for, in sorted order.
func (o *mcObj) rest() {
	var keys []string
	for k := range o.m {
		if !o.used[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		o.used[k] = true
		o.c.fail(o.p(k), "not supported by streamd")
	}
}

func mcValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// mcRendition is one video output of a streaming group.
type mcRendition struct {
	path    string // the output's path
	rung    transcode.Rung
	gopPath string
	gop     float64 // GopSize; 0 when not set
	gopUnit string
}

// mcGroup is one HLS, DASH or CMAF output group.
type mcGroup struct {
	path       string
	kind       string // "HLS", "DASH", "CMAF"
	seg        float64
	segPath    string
	renditions []mcRendition
}

// mcJob is what the walk found.
type mcJob struct {
	groups       []*mcGroup
	audioBitrate []int64 // every AAC bitrate asked for
	thumbs       time.Duration
	groupsPath   string // Settings.OutputGroups, as the document writes it
}

// ParseMediaConvert reads an AWS MediaConvert job document — a bare
// Settings object, a CreateJob request ({"Role", "Settings", …}), a job
// template ({"Name", "Settings", …}) or the get-job / get-job-template
// answers ({"Job": {…}}, {"JobTemplate": {…}}) — into a Job. Settings
// streamd cannot honour are all listed in one *Error; settings accepted
// without effect are in Job.Notes.
func ParseMediaConvert(data []byte) (Job, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return Job{}, &Error{Code: CodeInvalidJob, Message: "MediaConvert job is not valid JSON: " + err.Error()}
	}
	c := &mcConv{}
	top := c.object("", v)
	jobLevel := top
	switch {
	case top.has("Job"):
		jobLevel = top.sub("Job")
		top.rest()
	case top.has("JobTemplate"):
		if jt, ok := top.m["JobTemplate"].(map[string]any); ok {
			jobLevel = c.object("JobTemplate", jt)
			top.used["JobTemplate"] = true
			top.rest()
		}
	}
	var mj mcJob
	if jobLevel.has("Settings") || !jobLevel.has("OutputGroups") {
		c.jobLevel(jobLevel, &mj)
	} else {
		c.settings(jobLevel, &mj)
	}
	j := c.build(&mj)
	if len(c.errs) > 0 {
		n := fmt.Sprintf("%d problems", len(c.errs))
		if len(c.errs) == 1 {
			n = "1 problem"
		}
		return Job{}, &Error{Code: CodeInvalidJob, Message: fmt.Sprintf("MediaConvert job is not valid for streamd (%s): %s",
			n, strings.Join(c.errs, "; "))}
	}
	j.Notes = c.render()
	return j, nil
}

// jobLevel is the CreateJob request or job template around Settings.
func (c *mcConv) jobLevel(o *mcObj, mj *mcJob) {
	if v, ok := o.get("JobTemplate"); ok {
		c.fail(o.p("JobTemplate"), "the job refers to template %s, which streamd cannot read: pass the template's JSON "+
			"(aws mediaconvert get-job-template --name NAME) or a job with the settings inlined", mcValue(v))
	}
	if !o.has("Settings") {
		c.fail(o.p("Settings"), "missing: a MediaConvert job needs Settings.OutputGroups")
	}
	c.settings(o.sub("Settings"), mj)
	o.ignore("AWS account/queue setting, "+mcNoEffect, "Role", "Queue", "AccelerationSettings", "BillingTagsSource",
		"ClientRequestToken", "HopDestinations", "Priority", "SimulateReservedQueue", "StatusUpdateInterval", "Tags",
		"UserMetadata", "JobEngineVersion")
	o.ignore("template description, "+mcNoEffect, "Name", "Description", "Category", "Type")
	o.ignore("job status (get-job answer), "+mcNoEffect, "Arn", "Id", "CreatedAt", "LastUpdated", "Status", "Timing",
		"CurrentPhase", "JobPercentComplete", "Messages", "OutputGroupDetails", "RetryCount", "ErrorCode", "ErrorMessage",
		"QueueTransitions", "AccelerationStatus", "Warnings", "JobEngineVersionRequested", "JobEngineVersionUsed")
	o.rest()
}

func (c *mcConv) settings(o *mcObj, mj *mcJob) {
	inputs := o.arr("Inputs")
	if len(inputs) > 1 {
		c.fail(o.p("Inputs"), "%d inputs: streamd transcodes one input file (no stitching)", len(inputs))
	}
	for i, in := range inputs {
		c.input(c.object(fmt.Sprintf("%s[%d]", o.p("Inputs"), i), in))
	}
	mj.groupsPath = o.p("OutputGroups")
	groups := o.arr("OutputGroups")
	if len(groups) == 0 && o.m != nil {
		c.fail(o.p("OutputGroups"), "needs at least one HLS, DASH or CMAF output group")
	}
	for i, g := range groups {
		c.outputGroup(c.object(fmt.Sprintf("%s[%d]", o.p("OutputGroups"), i), g), mj)
	}
	o.agree("AdAvailOffset", "ad avails are not supported, "+mcNoEffect, "0")
	o.ignore(mcNoEffect, "TimecodeConfig", "FollowSource")
	o.refuse("image overlays are not supported", "MotionImageInserter")
	o.rest()
}

func (c *mcConv) input(o *mcObj) {
	o.ignore("the input is the INPUT argument of streamd transcode", "FileInput")
	o.ignore("streamd keeps every audio language of the input, one rendition each", "AudioSelectors", "AudioSelectorGroups")
	o.ignore("streamd encodes the input's first video stream, rotation and aspect from its metadata", "VideoSelector")
	o.ignore("input decoding detail, "+mcNoEffect, "TimecodeSource", "TimecodeStart", "PsiControl", "FilterEnable",
		"FilterStrength", "InputScanType", "ProgramNumber", "AdvancedInputFilter", "AdvancedInputFilterSettings")
	o.agree("DeblockFilter", "streamd applies no input filter", "DISABLED")
	o.agree("DenoiseFilter", "streamd applies no input filter", "DISABLED")
	o.refuse("clipping is not supported: streamd transcodes the whole input", "InputClippings")
	o.refuse("image overlays are not supported", "ImageInserter", "VideoOverlays")
	o.refuse("captions are not read from selectors: streamd extracts the input's own text subtitle tracks to WebVTT", "CaptionSelectors")
	o.refuse("cropping and positioning are not supported: streamd keeps the whole picture", "Crop", "Position")
	o.refuse("encrypted input is not supported", "DecryptionSettings")
	o.rest()
}

var mcGroupKinds = map[string]struct{ kind, settings string }{
	"HLS_GROUP_SETTINGS":       {"HLS", "HlsGroupSettings"},
	"DASH_ISO_GROUP_SETTINGS":  {"DASH", "DashIsoGroupSettings"},
	"CMAF_GROUP_SETTINGS":      {"CMAF", "CmafGroupSettings"},
	"FILE_GROUP_SETTINGS":      {"FILE", "FileGroupSettings"},
	"MS_SMOOTH_GROUP_SETTINGS": {"SMOOTH", "MsSmoothGroupSettings"},
}

func (c *mcConv) outputGroup(o *mcObj, mj *mcJob) {
	o.ignore("group name, "+mcNoEffect, "Name", "CustomName")
	o.refuse("automated ABR ladders are not supported: list the outputs", "AutomatedEncodingSettings")
	gs := o.sub("OutputGroupSettings")
	typ := gs.str("Type")
	k, known := mcGroupKinds[typ]
	switch {
	case gs.m == nil:
		c.fail(o.p("OutputGroupSettings"), "missing: the group's Type (HLS_GROUP_SETTINGS, DASH_ISO_GROUP_SETTINGS or CMAF_GROUP_SETTINGS) is needed")
		return
	case !known:
		c.fail(gs.p("Type"), "unknown output group type %q (streamd reads HLS_GROUP_SETTINGS, DASH_ISO_GROUP_SETTINGS, CMAF_GROUP_SETTINGS, and FILE_GROUP_SETTINGS with FRAME_CAPTURE outputs)", typ)
		return
	case k.kind == "SMOOTH":
		c.fail(gs.p("Type"), "MS_SMOOTH_GROUP_SETTINGS not supported (streamd writes HLS and DASH, no Smooth Streaming): remove the group")
		return
	case k.kind == "FILE":
		c.fileGroup(o, gs, mj)
		return
	}
	g := &mcGroup{path: o.path, kind: k.kind}
	c.groupSettings(gs.sub(k.settings), g)
	if !gs.has(k.settings) {
		g.seg, g.segPath = 10, gs.p(k.settings)
		c.note(gs.path, k.settings, "not set: MediaConvert's default SegmentLength of 10 s is used")
	}
	for name := range mcGroupKinds {
		if s := mcGroupKinds[name].settings; s != k.settings && gs.has(s) {
			gs.used[s] = true
			c.fail(gs.p(s), "does not belong to a %s group", typ)
		}
	}
	gs.rest()
	outs := o.arr("Outputs")
	if len(outs) == 0 {
		c.fail(o.p("Outputs"), "a %s group needs outputs", k.kind)
	}
	for i, out := range outs {
		c.output(c.object(fmt.Sprintf("%s[%d]", o.p("Outputs"), i), out), g, mj)
	}
	o.rest()
	mj.groups = append(mj.groups, g)
}

// groupSettings reads HlsGroupSettings, DashIsoGroupSettings or
// CmafGroupSettings.
func (c *mcConv) groupSettings(o *mcObj, g *mcGroup) {
	g.seg, g.segPath = 10, o.p("SegmentLength")
	if s, ok := o.num("SegmentLength"); ok {
		if s < 1 || s != math.Trunc(s) {
			c.fail(o.p("SegmentLength"), "%g must be a whole number of seconds, at least 1", s)
		}
		g.seg = s
	} else if o.m != nil {
		c.note(o.path, "SegmentLength", "not set: MediaConvert's default of 10 s is used")
	}
	if ms, ok := o.num("MinSegmentLength"); ok && ms > 0 {
		if ms > g.seg {
			c.fail(o.p("MinSegmentLength"), "%g s is longer than SegmentLength %g s", ms, g.seg)
		} else {
			c.note(o.path, "MinSegmentLength", "met by construction: every segment but the last is exactly SegmentLength (keyframes are forced on that grid); the last one can be shorter")
		}
	}
	o.ignore("streamd writes one fragment per segment", "FragmentLength")
	o.ignore(mcDestination, "Destination", "DestinationSettings", "BaseUrl")
	o.refuse("DRM/encryption is not supported: streamd writes clear segments", "Encryption")
	o.refuse("extra manifests with a subset of the outputs are not supported: streamd writes one HLS master and one MPD", "AdditionalManifests")
	o.agree("SegmentControl", "streamd writes one file per segment", "SEGMENTED_FILES")
	o.agree("OutputSelection", "streamd always writes manifests and segments", "MANIFESTS_AND_SEGMENTS")
	o.agree("ProgramDateTime", "streamd writes no EXT-X-PROGRAM-DATE-TIME in VOD playlists", "EXCLUDE")
	o.agree("CaptionLanguageSetting", "captions are not supported; text subtitles of the input are listed as WebVTT", "OMIT", "NONE")
	o.agree("ImageBasedTrickPlay", "streamd writes a thumbnail sprite sheet with a WebVTT track (thumbnails.jpg, thumbnails.vtt) instead", "NONE")
	o.agree("WriteHlsManifest", "streamd always writes the HLS master (index.m3u8)", "ENABLED")
	o.agree("WriteDashManifest", "streamd always writes the DASH MPD (manifest.mpd)", "ENABLED")
	o.agree("ManifestCompression", "manifests are written uncompressed", "NONE")
	o.ignore("ad markers are not supported, "+mcNoEffect, "AdMarkers")
	o.ignore(mcMuxer, "ManifestDurationFormat", "CodecSpecification", "DirectoryStructure", "ClientCache",
		"StreamInfResolution", "TimedMetadataId3Frame", "TimedMetadataId3Period", "TimestampDeltaMilliseconds",
		"ProgramDateTimePeriod", "SegmentsPerSubdirectory", "TargetDurationCompatibilityMode", "MinFinalSegmentLength",
		"CaptionLanguageMappings", "CaptionSegmentLengthControl", "ProgressiveWriteHlsManifest", "SegmentLengthControl",
		"AudioOnlyHeader", "MinBufferTime", "MpdProfile", "HbbtvCompliance", "WriteSegmentTimelineInRepresentation",
		"PtsOffsetHandlingForBFrames", "AudioChannelConfigSchemeIdUri", "DashManifestStyle", "MpdManifestBandwidthType",
		"VideoCompositionOffsets", "DashIFrameTrickPlayNameModifier", "FragmentTime", "ManifestDurationFormat",
		"ImageBasedTrickPlaySettings", "DashIsoGroupAudioChannelConfigSchemeIdUri", "C2paManifest", "CodecSpecification")
	o.rest()
}

// fileGroup accepts a FILE group only when every output is a FRAME_CAPTURE
// (the reference solution's thumbnails): it sets the thumbnail interval.
// MP4 files are refused as a whole.
func (c *mcConv) fileGroup(o, gs *mcObj, mj *mcJob) {
	outs := o.arr("Outputs")
	for _, out := range outs {
		m, _ := out.(map[string]any)
		vd, _ := m["VideoDescription"].(map[string]any)
		cs, _ := vd["CodecSettings"].(map[string]any)
		if cs["Codec"] != "FRAME_CAPTURE" {
			c.fail(gs.p("Type"), "FILE_GROUP_SETTINGS with video files not supported (streamd writes HLS and DASH, no progressive MP4 downloads): remove the group; a group of FRAME_CAPTURE outputs sets the thumbnails")
			return
		}
	}
	fgs := gs.sub("FileGroupSettings")
	fgs.ignore(mcDestination, "Destination", "DestinationSettings")
	fgs.rest()
	gs.rest()
	for i, out := range outs {
		oo := c.object(fmt.Sprintf("%s[%d]", o.p("Outputs"), i), out)
		cont := oo.sub("ContainerSettings")
		cont.agree("Container", "frame captures are JPEG", "RAW")
		cont.rest()
		oo.ignore(mcNoEffect, "NameModifier", "Extension")
		vd := oo.sub("VideoDescription")
		vd.ignore("streamd's thumbnails are 160x90 tiles on one sprite sheet (thumbnails.jpg) and its poster.jpg is at the top rendition's size",
			"Width", "Height")
		vd.ignore("frame capture detail, no effect: streamd makes its thumbnails its own way", "ScalingBehavior",
			"TimecodeInsertion", "AntiAlias", "Sharpness", "DropFrameTimecode", "ColorMetadata", "AfdSignaling", "RespondToAfd")
		cs := vd.sub("CodecSettings")
		cs.str("Codec")
		fc := cs.sub("FrameCaptureSettings")
		num, okN := fc.num("FramerateNumerator")
		den, okD := fc.num("FramerateDenominator")
		switch {
		case !okN || !okD || num <= 0 || den <= 0:
			c.fail(fc.path, "FramerateNumerator and FramerateDenominator must be positive (one capture every Denominator/Numerator seconds)")
		case den/num < 1:
			c.fail(fc.p("FramerateNumerator"), "%g captures per second: streamd's thumbnail interval is at least 1 s", num/den)
		default:
			d := time.Duration(den / num * float64(time.Second)).Round(time.Millisecond)
			if mj.thumbs != 0 && mj.thumbs != d {
				c.fail(fc.path, "a second frame capture rate (%s, the first is %s): streamd makes one thumbnail track", d, mj.thumbs)
			}
			mj.thumbs = d
		}
		fc.ignore("streamd makes at most 400 thumbnails (the interval grows on long inputs)", "MaxCaptures")
		fc.ignore("thumbnails are JPEG at streamd's quality", "Quality")
		fc.rest()
		cs.rest()
		vd.rest()
		oo.rest()
	}
	o.rest()
}

func (c *mcConv) output(o *mcObj, g *mcGroup, mj *mcJob) {
	if v, ok := o.get("Preset"); ok {
		c.fail(o.p("Preset"), "output preset %s cannot be read by streamd: inline its VideoDescription and AudioDescriptions", mcValue(v))
	}
	cont := o.sub("ContainerSettings")
	switch ct := cont.str("Container"); ct {
	case "", "CMFC", "MPD", "MP4":
	case "M3U8":
		c.note(cont.path, "Container", `"M3U8" (MPEG-TS segments): streamd writes CMAF fMP4 segments (HLS version 7), which every current HLS player reads`)
	default:
		c.fail(cont.p("Container"), "%q not supported in a %s group (streamd writes CMAF fMP4 segments)", ct, g.kind)
	}
	cont.ignore(mcMuxer, "M3u8Settings", "CmfcSettings", "MpdSettings", "Mp4Settings")
	cont.rest()
	o.ignore(mcMuxer, "OutputSettings", "Extension")
	o.refuse("captions are not supported: streamd lists the input's own text subtitle tracks as WebVTT in both manifests", "CaptionDescriptions")
	name := o.str("NameModifier")
	_, hasVideo := o.m["VideoDescription"]
	auds := o.arr("AudioDescriptions")
	if !hasVideo && len(auds) == 0 && o.m != nil {
		c.fail(o.path, "has neither VideoDescription nor AudioDescriptions")
	}
	if hasVideo {
		r := c.video(o.sub("VideoDescription"))
		r.path = o.path
		r.rung.Name = strings.TrimLeft(name, "_-.")
		if r.rung.Name == "" {
			r.rung.Name = strconv.Itoa(r.rung.Height) + "p"
		} else if strings.ContainsAny(r.rung.Name, `/\ `) {
			c.fail(o.p("NameModifier"), "%q names the rendition's folder: no slashes or spaces", name)
		}
		g.renditions = append(g.renditions, r)
	}
	for i, a := range auds {
		c.audio(c.object(fmt.Sprintf("%s[%d]", o.p("AudioDescriptions"), i), a), mj)
	}
	o.rest()
}

func (c *mcConv) video(o *mcObj) mcRendition {
	var r mcRendition
	w, okW := o.num("Width")
	h, okH := o.num("Height")
	switch {
	case !okH:
		c.fail(o.p("Height"), "missing: streamd renditions have a fixed size (an omitted size, MediaConvert's \"follow the source\", is not supported)")
	case h <= 0 || h != math.Trunc(h) || (okW && (w <= 0 || w != math.Trunc(w))):
		c.fail(o.path, "Width %g and Height %g must be positive whole numbers", w, h)
	default:
		short, long := int(h), int(w)
		if okW && w < h {
			short, long = int(w), int(h)
			c.note(o.path, "Height", "a portrait size: streamd's rendition size is the short side (any source orientation gets renditions of that orientation)")
		}
		if short%2 != 0 {
			c.fail(o.path, "%dx%d: H.264 4:2:0 needs even sizes", int(w), int(h))
		}
		r.rung.Height, r.rung.Width = short, long
		if !okW {
			r.rung.Width = 0
		}
	}
	o.ignore("streamd keeps the source's aspect ratio (Height is the short side, the long side follows the source) and never upscales",
		"ScalingBehavior")
	o.ignore(mcTuning, "AntiAlias", "Sharpness")
	o.agree("AfdSignaling", mcNoEffect, "NONE")
	o.agree("RespondToAfd", mcNoEffect, "NONE")
	o.ignore(mcDisplay, "DropFrameTimecode", "TimecodeInsertion", "TimecodeTrack", "ColorMetadata", "FixedAfd")
	o.refuse("cropping and positioning are not supported: streamd keeps the whole picture", "Crop", "Position")
	pre := o.sub("VideoPreprocessors")
	pre.ignore("streamd deinterlaces interlaced sources by itself (yadif, flagged frames only)", "Deinterlacer")
	pre.refuse("image overlays are not supported", "ImageInserter")
	pre.refuse("burnt-in timecode is not supported", "TimecodeBurnin")
	pre.rest()

	cs := o.sub("CodecSettings")
	codec := cs.str("Codec")
	others := false
	for k := range cs.m {
		if k != "Codec" && k != "H264Settings" {
			others = true
		}
	}
	cs.refuse("streamd encodes H.264", "H265Settings", "Av1Settings", "Vp8Settings", "Vp9Settings", "Mpeg2Settings",
		"ProresSettings", "XavcSettings", "AvcIntraSettings", "Vc3Settings", "UncompressedSettings", "FrameCaptureSettings",
		"GifSettings")
	if codec != "H_264" && !others {
		c.fail(cs.p("Codec"), "%q not supported (streamd encodes H.264: H_264)", codec)
	}
	if codec == "H_264" {
		c.h264(cs.sub("H264Settings"), &r)
	} else if cs.has("H264Settings") {
		c.fail(cs.p("H264Settings"), "set, but Codec is %q", codec)
	}
	cs.rest()
	o.rest()
	return r
}

// mcPeakRatio is our ladders' peak-to-target ratio (5000k/5350k …), used
// to give a QVBR output a target.
const mcPeakRatio = 1.07

func (c *mcConv) h264(o *mcObj, r *mcRendition) {
	if o.m == nil {
		c.fail(o.path, "missing: the H.264 rate settings (RateControlMode, Bitrate or MaxBitrate) are needed")
		return
	}
	kbps := func(v float64) string {
		if math.Mod(v, 1000) == 0 {
			return strconv.FormatInt(int64(v/1000), 10) + "k"
		}
		return strconv.FormatInt(int64(v), 10)
	}
	br, okB := o.num("Bitrate")
	mx, okM := o.num("MaxBitrate")
	qv := o.sub("QvbrSettings")
	switch mode := o.str("RateControlMode"); mode {
	case "CBR", "":
		if !okB || br <= 0 {
			c.fail(o.p("Bitrate"), "a positive bitrate in bits/s is needed for %s", orDefault(mode, "CBR (MediaConvert's default)"))
			break
		}
		r.rung.VideoBitrate, r.rung.MaxBitrate = kbps(br), kbps(br)
		c.note(o.path, "RateControlMode", "CBR: streamd encodes with libx264's peak rate (maxrate) equal to Bitrate, without filler data")
		if okM {
			c.note(o.path, "MaxBitrate", "not used with CBR (as in MediaConvert)")
		}
	case "VBR":
		if !okB || br <= 0 {
			c.fail(o.p("Bitrate"), "a positive bitrate in bits/s is needed for VBR")
			break
		}
		r.rung.VideoBitrate, r.rung.MaxBitrate = kbps(br), kbps(br)
		if okM {
			if mx < br {
				c.fail(o.p("MaxBitrate"), "%g is below Bitrate %g", mx, br)
			}
			r.rung.MaxBitrate = kbps(mx)
		}
	case "QVBR":
		if !okM || mx <= 0 {
			c.fail(o.p("MaxBitrate"), "a positive peak bitrate in bits/s is needed for QVBR")
			break
		}
		target := math.Round(mx/mcPeakRatio/1000) * 1000
		if avg, ok := qv.num("MaxAverageBitrate"); ok && avg > 0 {
			target = min(avg, mx)
		}
		r.rung.VideoBitrate, r.rung.MaxBitrate = kbps(target), kbps(mx)
		c.note(o.path, "RateControlMode", "QVBR: streamd has no quality-targeted mode; it encodes VBR with MaxBitrate as the peak and QvbrSettings.MaxAverageBitrate, or else MaxBitrate/1.07, as the target (files come out larger than QVBR's)")
		if okB {
			c.note(o.path, "Bitrate", "not used with QVBR (as in MediaConvert)")
		}
	default:
		c.fail(o.p("RateControlMode"), "%q not supported (CBR, VBR or QVBR)", mode)
	}
	qv.ignore("streamd has no quality-targeted mode (see RateControlMode)", "QvbrQualityLevel", "QvbrQualityLevelFineTune")
	qv.rest()

	fps := 0.0
	switch fc := o.str("FramerateControl"); fc {
	case "", "INITIALIZE_FROM_SOURCE":
		o.ignore("not used with INITIALIZE_FROM_SOURCE (as in MediaConvert)", "FramerateNumerator", "FramerateDenominator")
	case "SPECIFIED":
		n, okN := o.num("FramerateNumerator")
		d, okD := o.num("FramerateDenominator")
		if !okN || !okD || n <= 0 || d <= 0 || n/d > 240 {
			c.fail(o.p("FramerateNumerator"), "SPECIFIED needs FramerateNumerator/FramerateDenominator, a rate above 0 and at most 240")
			break
		}
		fps = math.Round(n/d*1000) / 1000
		r.rung.Framerate = fps
		c.note(o.path, "FramerateControl", "SPECIFIED is a cap in streamd: a source with a lower frame rate keeps its own (MediaConvert would duplicate frames)")
	default:
		c.fail(o.p("FramerateControl"), "%q not supported (INITIALIZE_FROM_SOURCE or SPECIFIED)", fc)
	}
	o.agree("FramerateConversionAlgorithm", "streamd drops or duplicates frames (ffmpeg's fps filter)", "DUPLICATE_DROP")

	if g, ok := o.num("GopSize"); ok {
		r.gop, r.gopPath = g, o.p("GopSize")
		r.gopUnit = o.str("GopSizeUnits")
		if r.gopUnit == "" {
			r.gopUnit = "FRAMES" // MediaConvert's default
		}
		if r.gopUnit == "FRAMES" && fps > 0 {
			r.gop, r.gopUnit = g/fps, "SECONDS"
		}
	} else {
		o.ignore("no GopSize to apply it to", "GopSizeUnits")
	}

	switch p := o.str("CodecProfile"); p {
	case "":
	case "BASELINE", "MAIN", "HIGH":
		r.rung.Profile = strings.ToLower(p)
	default:
		c.fail(o.p("CodecProfile"), "%q not supported (streamd encodes 8-bit 4:2:0: BASELINE, MAIN or HIGH)", p)
	}
	o.agree("CodecLevel", "streamd lets libx264 pick the level from the size and rate", "AUTO")
	switch q := o.str("QualityTuningLevel"); q {
	case "":
		r.rung.Preset = "fast" // the VOD ladder's
	case "SINGLE_PASS":
		r.rung.Preset = "veryfast"
	case "SINGLE_PASS_HQ":
		r.rung.Preset = "medium"
	case "MULTI_PASS_HQ":
		r.rung.Preset = "slow"
		c.note(o.path, "QualityTuningLevel", "MULTI_PASS_HQ: streamd encodes in one pass, with libx264's slow preset")
	default:
		c.fail(o.p("QualityTuningLevel"), "%q not supported (SINGLE_PASS, SINGLE_PASS_HQ or MULTI_PASS_HQ)", q)
	}
	o.agreeOrRefuse("InterlaceMode", "streamd writes progressive video; interlaced sources are deinterlaced", "PROGRESSIVE")
	o.agreeOrRefuse("Telecine", "streamd writes no telecine", "NONE")
	o.agreeOrRefuse("SlowPal", "streamd does not change the speed", "DISABLED")
	o.ignore("only for interlaced output, which streamd does not write", "FieldEncoding", "ScanTypeConversionMode")
	switch pc := o.str("ParControl"); pc {
	case "", "INITIALIZE_FROM_SOURCE":
		o.ignore(mcNoEffect, "ParNumerator", "ParDenominator")
		if pc != "" {
			c.note(o.path, "ParControl", "INITIALIZE_FROM_SOURCE: streamd writes (near) square pixels, keeping the source's display aspect")
		}
	case "SPECIFIED":
		n, _ := o.num("ParNumerator")
		d, _ := o.num("ParDenominator")
		if n != d || n <= 0 {
			c.fail(o.p("ParNumerator"), "a pixel aspect of %g:%g not supported (streamd writes square pixels)", n, d)
		}
	default:
		c.fail(o.p("ParControl"), "%q not supported", pc)
	}
	o.ignore(mcTuning, "AdaptiveQuantization", "SpatialAdaptiveQuantization", "TemporalAdaptiveQuantization",
		"FlickerAdaptiveQuantization", "NumberReferenceFrames", "NumberBFramesBetweenReferenceFrames", "GopBReference",
		"GopClosedCadence", "MinIInterval", "SceneChangeDetect", "DynamicSubGop", "Slices", "HrdBufferSize",
		"HrdBufferInitialFillPercentage", "HrdBufferFinalFillPercentage", "Softness", "EntropyEncoding", "Syntax",
		"RepeatPps", "UnregisteredSeiTimecode", "SaliencyAwareEncoding", "EndOfStreamMarkers", "WriteMp4PackagingType",
		"BandwidthReductionFilter", "PerFrameMetrics")
	o.rest()
}

func (c *mcConv) audio(o *mcObj, mj *mcJob) {
	o.ignore("streamd keeps every audio language of the input, one rendition each", "AudioSourceName", "AudioTypeControl",
		"AudioType", "LanguageCodeControl", "LanguageCode", "CustomLanguageCode", "StreamName", "AudioChannelTaggingSettings")
	o.refuse("loudness normalisation is not supported", "AudioNormalizationSettings")
	o.refuse("remixing is not supported: streamd down- or up-mixes to stereo", "RemixSettings")
	cs := o.sub("CodecSettings")
	codec := cs.str("Codec")
	var others []string
	for k := range cs.m {
		if k != "Codec" && k != "AacSettings" {
			others = append(others, k)
		}
	}
	sort.Strings(others)
	cs.refuse("streamd encodes AAC", others...)
	if codec != "AAC" && len(others) == 0 {
		c.fail(cs.p("Codec"), "%q not supported (streamd encodes AAC)", codec)
	}
	aac := cs.sub("AacSettings")
	if codec == "AAC" {
		if b, ok := aac.num("Bitrate"); ok && b > 0 {
			mj.audioBitrate = append(mj.audioBitrate, int64(b))
		} else {
			c.fail(aac.p("Bitrate"), "a positive bitrate in bits/s is needed")
		}
	}
	aac.agree("SampleRate", "streamd always encodes 48 kHz, which every player takes", "48000")
	switch cm := aac.str("CodingMode"); cm {
	case "", "CODING_MODE_2_0":
	case "CODING_MODE_1_0":
		c.note(aac.path, "CodingMode", "CODING_MODE_1_0: streamd always writes stereo (a mono source is up-mixed)")
	default:
		c.fail(aac.p("CodingMode"), "%q not supported (streamd writes stereo: CODING_MODE_2_0; 5.1 sources are down-mixed)", cm)
	}
	aac.agree("CodecProfile", "streamd encodes AAC-LC, which every player decodes", "LC")
	aac.agree("RateControlMode", "streamd encodes AAC at a constant bitrate", "CBR")
	aac.agree("Specification", "streamd writes MPEG-4 AAC", "MPEG4")
	aac.agreeOrRefuse("RawFormat", "streamd writes AAC in fMP4", "NONE")
	aac.agreeOrRefuse("AudioDescriptionBroadcasterMix", "audio description mixes are not supported", "NORMAL")
	aac.ignore("only for VBR, which streamd does not use", "VbrQuality")
	aac.rest()
	cs.rest()
	o.rest()
}

// build turns the groups into one Job: one set of CMAF segments that
// both manifests list, so every streaming group must agree.
func (c *mcConv) build(mj *mcJob) Job {
	j := DefaultJob()
	j.Ladder.Name = "mediaconvert"
	j.Ladder.Rungs = nil
	j.ThumbnailInterval = mj.thumbs
	if len(mj.groups) == 0 {
		if len(c.errs) == 0 {
			c.fail(orDefault(mj.groupsPath, "OutputGroups"), "no HLS, DASH or CMAF output group: streamd has nothing to make")
		}
		return j
	}
	first := mj.groups[0]
	j.SegmentDuration = time.Duration(first.seg * float64(time.Second))
	kinds := map[string]bool{}
	for _, g := range mj.groups {
		kinds[g.kind] = true
	}
	switch {
	case len(mj.groups) == 1 && first.kind == "HLS":
		c.note(first.path, "OutputGroupSettings", "HLS group: streamd writes index.m3u8 and, over the same CMAF segments, manifest.mpd (DASH)")
	case len(mj.groups) == 1:
		c.note(first.path, "OutputGroupSettings", first.kind+" group: streamd writes manifest.mpd and, over the same CMAF segments, index.m3u8 (HLS)")
	default:
		c.note(mj.groupsPath, "", "several streaming groups: streamd makes one set of CMAF segments, listed by both index.m3u8 (HLS) and manifest.mpd (DASH); the groups' identical renditions are encoded once, named as in the first group")
	}
	key := func(r transcode.Rung) string {
		return fmt.Sprintf("%dp %s/%s %gfps %s", r.Height, r.VideoBitrate, r.MaxBitrate, r.Framerate, r.Profile)
	}
	for _, g := range mj.groups[1:] {
		if g.seg != first.seg {
			c.fail(g.segPath, "%g s differs from %g s in %s: streamd writes one set of segments for HLS and DASH", g.seg, first.seg, first.path)
		}
		a, b := map[string]bool{}, map[string]bool{}
		for _, r := range first.renditions {
			a[key(r.rung)] = true
		}
		for _, r := range g.renditions {
			b[key(r.rung)] = true
			if !a[key(r.rung)] {
				c.fail(r.path, "rendition %s has no twin in %s: streamd serves one set of renditions through both manifests; give the groups the same video outputs or remove one", key(r.rung), first.path)
			}
		}
		for _, r := range first.renditions {
			if !b[key(r.rung)] {
				c.fail(r.path, "rendition %s has no twin in %s: streamd serves one set of renditions through both manifests; give the groups the same video outputs or remove one", key(r.rung), g.path)
			}
		}
	}
	names := map[string]string{}
	for _, r := range first.renditions {
		if p, dup := names[r.rung.Name]; dup {
			c.fail(r.path, "rendition name %q is also the name of %s (NameModifier must differ)", r.rung.Name, p)
		}
		names[r.rung.Name] = r.path
		j.Ladder.Rungs = append(j.Ladder.Rungs, r.rung)
	}
	for _, g := range mj.groups {
		for _, r := range g.renditions {
			c.checkGOP(r, g)
		}
	}
	if len(j.Ladder.Rungs) == 0 {
		c.fail(first.path+".Outputs", "no video output: streamd needs at least one H.264 rendition")
	}
	// Highest first, like our own ladders.
	sort.SliceStable(j.Ladder.Rungs, func(a, b int) bool {
		ra, rb := j.Ladder.Rungs[a], j.Ladder.Rungs[b]
		if ra.Height != rb.Height {
			return ra.Height > rb.Height
		}
		ba, _ := transcode.ParseBitrate(ra.VideoBitrate)
		bb, _ := transcode.ParseBitrate(rb.VideoBitrate)
		return ba > bb
	})
	switch n := len(mj.audioBitrate); {
	case n == 0:
		c.note(mj.groupsPath+"[*].Outputs[*]", "AudioDescriptions", "none: MediaConvert would drop the audio; streamd keeps it, AAC "+j.Ladder.Audio.Bitrate+" 48 kHz stereo")
	default:
		top := slices.Max(mj.audioBitrate)
		j.Ladder.Audio.Bitrate = strconv.FormatInt(top/1000, 10) + "k"
		if top%1000 != 0 {
			j.Ladder.Audio.Bitrate = strconv.FormatInt(top, 10)
		}
		if slices.Min(mj.audioBitrate) != top {
			var all []string
			for _, b := range mj.audioBitrate {
				s := strconv.FormatInt(b/1000, 10) + "k"
				if !slices.Contains(all, s) {
					all = append(all, s)
				}
			}
			c.note(mj.groupsPath+"[*].Outputs[*].AudioDescriptions[*].CodecSettings.AacSettings", "Bitrate", fmt.Sprintf("AAC bitrates %s: streamd encodes one AAC rendition per language shared by every video rendition, at the highest, %s", strings.Join(all, ", "), j.Ladder.Audio.Bitrate))
		}
	}
	if len(c.errs) == 0 {
		if err := j.Ladder.Validate(); err != nil {
			c.fail("converted ladder", "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}
	return j
}

// checkGOP: streamd puts exactly one keyframe at the start of every
// segment (GOP = SegmentLength). A MediaConvert GOP that divides the
// segment length is only noted; one that does not is an error, since the
// job's own segments could not start on keyframes.
func (c *mcConv) checkGOP(r mcRendition, g *mcGroup) {
	if r.gop == 0 {
		return
	}
	switch r.gopUnit {
	case "SECONDS":
	case "FRAMES":
		c.note(r.gopPath, "", "a GOP in frames at the source's frame rate cannot be checked against SegmentLength; streamd puts one keyframe at the start of every segment")
		return
	case "AUTO":
		c.note(r.gopPath, "", "AUTO: streamd puts one keyframe at the start of every segment")
		return
	default:
		c.fail(r.gopPath, "GopSizeUnits %q not supported (SECONDS, FRAMES or AUTO)", r.gopUnit)
		return
	}
	ratio := g.seg / r.gop
	switch {
	case r.gop > g.seg+1e-9:
		c.fail(r.gopPath, "a GOP of %.4g s is longer than SegmentLength %g s: every segment must start with a keyframe", r.gop, g.seg)
	case math.Abs(ratio-math.Round(ratio)) > 1e-6:
		c.fail(r.gopPath, "SegmentLength %g s is not a whole number of %.4g s GOPs: segments would not start on keyframes", g.seg, r.gop)
	case r.gop < g.seg-1e-9:
		c.note(r.gopPath, "", fmt.Sprintf("%.4g s: streamd uses one GOP per segment (%g s), keyframes at every segment start and nowhere else", r.gop, g.seg))
	}
}

// render prints the notes, one line per (kind of place, reason): the same
// note on every output becomes one line with [*] for the index.
func (c *mcConv) render() []string {
	type group struct {
		parents map[string]bool
		fields  []string
	}
	var order []string
	groups := map[string]*group{}
	for _, n := range c.notes {
		k := mcGeneric(n.parent) + "\x00" + n.reason
		g, ok := groups[k]
		if !ok {
			g = &group{parents: map[string]bool{}}
			groups[k] = g
			order = append(order, k)
		}
		g.parents[n.parent] = true
		if n.field != "" && !slices.Contains(g.fields, n.field) {
			g.fields = append(g.fields, n.field)
		}
	}
	var out []string
	for _, k := range order {
		g := groups[k]
		generic, reason, _ := strings.Cut(k, "\x00")
		parent := mcCommon(generic, g.parents)
		var where string
		switch len(g.fields) {
		case 0:
			where = parent
		case 1:
			where = mcJoin(parent, g.fields[0])
		default:
			where = mcJoin(parent, "{"+strings.Join(g.fields, ", ")+"}")
		}
		if where == "" {
			where = "(document)"
		}
		out = append(out, where+": "+reason)
	}
	return out
}

// mcCommon writes the parents of one note group (all of the same generic
// form) with [*] only at the indices where they differ.
func mcCommon(generic string, parents map[string]bool) string {
	var idx [][]string // per parent, its indices
	for p := range parents {
		var ix []string
		for rest := p; ; {
			i := strings.IndexByte(rest, '[')
			if i < 0 {
				break
			}
			j := strings.IndexByte(rest[i:], ']')
			if j < 0 {
				break
			}
			ix = append(ix, rest[i+1:i+j])
			rest = rest[i+j+1:]
		}
		idx = append(idx, ix)
	}
	var b strings.Builder
	parts := strings.Split(generic, "[*]")
	for n, part := range parts {
		b.WriteString(part)
		if n == len(parts)-1 {
			break
		}
		v := idx[0][n]
		for _, ix := range idx[1:] {
			if ix[n] != v {
				v = "*"
			}
		}
		b.WriteString("[" + v + "]")
	}
	return b.String()
}

// mcGeneric replaces array indices with [*].
func mcGeneric(path string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(path, '[')
		if i < 0 {
			b.WriteString(path)
			return b.String()
		}
		j := strings.IndexByte(path[i:], ']')
		if j < 0 {
			b.WriteString(path)
			return b.String()
		}
		b.WriteString(path[:i] + "[*]")
		path = path[i+j+1:]
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
